//! Taking a registry root down (`airlift uninstall`): the systemd unit install put in
//! /etc/systemd/system (stopped, disabled, removed; without systemd or root, what would
//! be done is said instead), then the root's config, certificates, credentials, unit
//! file and copy of airlift; with `data`, its storage and the root itself. config.json
//! goes first: from then on the root no longer counts as installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::config::{Config, CONFIG_FILE};
use super::install::{self, BINARY, SYSTEMD_RUNNING, SYSTEMD_UNIT_DIR, UNIT_NAME};
use crate::error::{usage, Error, IoContext, Result};

/// What an uninstall did.
#[derive(Debug, Clone)]
pub struct Uninstalled {
    pub root: PathBuf,
    /// What was done about the systemd unit, or would be done (`service_done == false`).
    pub service: Vec<String>,
    pub service_done: bool,
    pub removed: Vec<PathBuf>,
    /// The storage, kept without `data`.
    pub kept: Option<PathBuf>,
}

/// Uninstall the registry root at `root` (it must hold a config.json that parses).
pub fn uninstall(root: &Path, data: bool) -> Result<Uninstalled> {
    let config = Config::load(root)?;
    let root = root.canonicalize().at(root)?;
    let storage = config.storage_dir(&root);
    let (service, service_done) = remove_unit(&root)?;
    let mut removed = Vec::new();
    let mut targets: Vec<PathBuf> = vec![root.join(CONFIG_FILE), config.resolve(&root, &config.htpasswd)];
    // The operator's pair, when there is one, was copied into tls/ too.
    targets.push(root.join("tls"));
    // bin/ holds the copy of airlift (BINARY); .airlift/ the install lock.
    targets.extend([root.join(UNIT_NAME), root.join(parent_of(BINARY)), root.join(".airlift")]);
    if data {
        targets.extend([storage.clone(), root.join("serve.log")]);
    }
    for path in targets {
        if remove(&path)? {
            removed.push(path);
        }
    }
    if data && fs::remove_dir(&root).is_ok() {
        removed.push(root.clone());
    }
    Ok(Uninstalled { root, service, service_done, removed, kept: (!data).then_some(storage) })
}

/// The directory of a root-relative path (`bin/airlift` → `bin`).
fn parent_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or(rel, |(dir, _)| dir)
}

/// Remove a file or a directory tree; false when it was not there.
fn remove(path: &Path) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.is_dir() {
        fs::remove_dir_all(path).at(path)?;
    } else {
        fs::remove_file(path).at(path)?;
    }
    Ok(true)
}

/// Stop, disable and remove the unit install put in /etc/systemd/system for `root`; when
/// systemd does not run the host or this is not root, say what would be done. Returns
/// the lines and whether they were done.
fn remove_unit(root: &Path) -> Result<(Vec<String>, bool)> {
    let installed = Path::new(SYSTEMD_UNIT_DIR).join(UNIT_NAME);
    let text = match fs::read_to_string(&installed) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((vec![format!("no unit {} is installed: nothing to stop", installed.display())], true))
        }
        Err(e) => return Err(Error::io(&installed, e)),
    };
    if !install::unit_serves(&text, root) {
        return Ok((vec![format!("{} serves another root: left alone", installed.display())], true));
    }
    let steps = [
        format!("systemctl disable --now {UNIT_NAME}"),
        format!("rm {}", installed.display()),
        "systemctl daemon-reload".to_string(),
    ];
    let why = if !Path::new(SYSTEMD_RUNNING).is_dir() {
        "systemd does not run this host"
    } else if !rustix::process::geteuid().is_root() {
        "removing a systemd unit needs root"
    } else {
        run_systemctl(&["disable", "--now", UNIT_NAME])?;
        fs::remove_file(&installed).at(&installed)?;
        run_systemctl(&["daemon-reload"])?;
        return Ok((steps.to_vec(), true));
    };
    let mut lines = vec![format!("not done ({why}); as root: {}", steps.join(" && "))];
    lines.push("a registry started by hand (`airlift serve`) is not stopped by uninstall".into());
    Ok((lines, false))
}

fn run_systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl").args(args).output().map_err(|e| usage(format!("running systemctl: {e}")))?;
    if !out.status.success() {
        return Err(usage(format!(
            "systemctl {} exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Uninstalled {
    pub fn summary(&self) -> String {
        let mut text = vec![format!("Registry {} uninstalled", self.root.display())];
        text.extend(self.service.iter().map(|l| format!("  service: {l}")));
        text.extend(self.removed.iter().map(|p| format!("  removed: {}", p.display())));
        if let Some(storage) = &self.kept {
            text.push(format!("  kept:    {} (the images; remove them with --data)", storage.display()));
        }
        text.join("\n")
    }

    pub fn document(&self) -> serde_json::Value {
        json!({
            "status": "ok",
            "exit_code": 0,
            "root": self.root,
            "service": { "done": self.service_done, "steps": self.service },
            "removed": self.removed,
            "kept": self.kept,
            "data_removed": self.kept.is_none(),
        })
    }
}
