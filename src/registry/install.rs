//! Setting up a registry root (the layout is drawn in `config.rs`): a CA and a server
//! certificate (or the operator's own pair, copied in), a generated password for the
//! initial user as a bcrypt htpasswd entry, a copy of the airlift executable, a systemd
//! unit, and `config.json`, written last: a root with a config is installed, and
//! installing it again changes nothing.
//!
//! Every file is written temp file + fsync + rename, with its final mode set before the
//! rename; secrets (keys, htpasswd) are 0600 from the moment they exist.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints, SanType, SerialNumber,
};
use serde_json::json;
use tokio_rustls::rustls;

use super::config::{self, Config};
use super::users::{self, check_user, first_user, generate_password};
use crate::error::{usage, Error, IoContext, Result};
use crate::store::{self, Commit};

/// Files of a root, relative to it (config.json is `config::CONFIG_FILE`).
pub const HTPASSWD: &str = "htpasswd";
pub const CA_CERT: &str = "tls/ca.crt";
pub const CA_KEY: &str = "tls/ca.key";
pub const SERVER_CERT: &str = "tls/server.crt";
pub const SERVER_KEY: &str = "tls/server.key";
pub const BINARY: &str = "bin/airlift";
pub const STORAGE: &str = "storage";
pub const UNIT_NAME: &str = "airlift-registry.service";

/// Where systemd looks for administrator units, and how to tell that systemd runs the host.
pub(super) const SYSTEMD_UNIT_DIR: &str = "/etc/systemd/system";
pub(super) const SYSTEMD_RUNNING: &str = "/run/systemd/system";

pub const DEFAULT_PORT: u16 = 8443;
pub const DEFAULT_USER: &str = "init";
const DAY: u64 = 86_400;
const CA_VALID_DAYS: u64 = 20 * 365;
const SERVER_VALID_DAYS: u64 = 10 * 365;

#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Name clients use; default: this host's name (/proc/sys/kernel/hostname).
    pub hostname: Option<String>,
    pub port: u16,
    /// Name of the initial user.
    pub user: String,
    /// The operator's certificate (PEM chain) and its key: copied to ROOT/tls/server.crt and
    /// server.key, and no CA is generated.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Enable and start the systemd unit when systemd runs the host and we are root.
    pub start: bool,
    /// The initial user's password (`--password-file`, checked by `users::check_password`);
    /// generated when absent.
    pub password: Option<String>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            hostname: None,
            port: DEFAULT_PORT,
            user: DEFAULT_USER.to_string(),
            tls_cert: None,
            tls_key: None,
            start: true,
            password: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Installed {
    pub config: Config,
    /// The root, absolute and canonical.
    pub root: PathBuf,
    /// false: the root was already installed and nothing was changed.
    pub fresh: bool,
    pub user: String,
    /// The generated password, only on a fresh install (the root keeps only its hash).
    pub password: Option<String>,
    /// The password was the operator's (`--password-file`): set, and never shown.
    pub password_chosen: bool,
    /// The CA clients must trust, when install generated one.
    pub ca_file: Option<PathBuf>,
    pub service: ServiceState,
    /// Options a rerun did not apply, because the root was already installed.
    pub ignored: Vec<String>,
    /// What a run found broken in a root installed before, and redid.
    pub repaired: Vec<String>,
    /// `--reset-password`: `password` is a new one for `user`.
    pub password_reset: bool,
}

impl Installed {
    /// `HOST:PORT`, as clients name the registry.
    pub fn registry(&self) -> String {
        format!("{}:{}", self.config.hostname, self.config.port)
    }

    /// `{"auths":{"HOST:PORT":{"auth":"base64(user:password)"}}}`, when the password is known.
    pub fn pull_secret(&self) -> Option<serde_json::Value> {
        let password = self.password.as_ref()?;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", self.user));
        Some(json!({ "auths": { self.registry(): { "auth": auth } } }))
    }

    pub fn podman_login(&self) -> String {
        format!("podman login {} -u {}", self.registry(), self.user)
    }

    /// The shell lines that make a host trust the CA: RHEL/Fedora, then Debian/Ubuntu.
    pub fn trust_commands(&self) -> Option<(String, String)> {
        let ca = self.ca_file.as_ref()?;
        let name = format!("airlift-{}.crt", self.config.hostname);
        Some((
            format!("cp {} /etc/pki/ca-trust/source/anchors/{name} && update-ca-trust", ca.display()),
            format!("cp {} /usr/local/share/ca-certificates/{name} && update-ca-certificates", ca.display()),
        ))
    }
}

#[derive(Debug, Clone)]
pub struct ServiceState {
    /// The unit install wrote, ROOT/airlift-registry.service.
    pub unit: PathBuf,
    pub status: ServiceStatus,
    /// How to start the registry: as root on a systemd host, and by hand without systemd.
    pub start_systemd: String,
    pub start_manual: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceStatus {
    /// Installed into /etc/systemd/system, enabled and started.
    Started,
    /// Not started; says why (not asked, no systemd, not root, another root's unit).
    NotStarted(String),
    /// `systemctl` failed; its error.
    Failed(String),
    /// The root was already installed: install did not touch the service.
    Unchanged,
}

impl ServiceStatus {
    pub fn label(&self) -> &'static str {
        match self {
            ServiceStatus::Started => "started",
            ServiceStatus::NotStarted(_) => "not-started",
            ServiceStatus::Failed(_) => "failed",
            ServiceStatus::Unchanged => "unchanged",
        }
    }
}

/// Set up a registry root at `root`, or, when it already holds one, change nothing and
/// describe it (`fresh == false`). A root counts as installed only when its files agree
/// (`problems` is empty); a half-installed one (a killed or raced install) is completed,
/// keeping a CA that is still good and the password already shown. Runs on one root are
/// serialised by an exclusive lock (ROOT/.airlift/install.lock): a second run waits, then
/// finds the root installed. Errors are usage errors (exit 2): bad hostname, user or
/// port, unreadable or mismatched `tls_cert`/`tls_key`, a root that cannot be written or
/// that holds something else.
pub fn install(root: &Path, opts: &InstallOptions) -> Result<Installed> {
    let (asked, tls) = check_options(opts)?;
    if config::installed(root) {
        return existing(root, opts, asked.as_deref());
    }
    // A config that parses means an install finished once (its password was shown): a
    // repair keeps its name and port unless asked otherwise.
    let previous = Config::load(root).ok();
    let hostname = match (asked.clone(), &previous) {
        (Some(h), _) => h,
        (None, Some(c)) => c.hostname.clone(),
        (None, None) => default_hostname()?,
    };
    let port = match &previous {
        Some(c) if opts.port == DEFAULT_PORT => c.port,
        _ => opts.port,
    };
    // Check everything the operator brought before the first write.
    let tls = match tls {
        Some((cert, key)) => Tls::Operator(load_operator_tls(cert, key, &hostname)?),
        None => Tls::Generate,
    };
    let exe = std::env::current_exe().map_err(|e| usage(format!("cannot locate the airlift executable: {e}")))?;
    let root = open_root(root)?;
    let _lock = lock_root(&root)?;
    // Another run may have installed the root while this one waited.
    if config::installed(&root) {
        return existing(&root, opts, asked.as_deref());
    }
    prepare_root(&root)?;
    let previous = Config::load(&root).ok();
    let mut repaired = if previous.is_some() { problems(&root) } else { Vec::new() };

    let ca_file = write_tls(&root, tls, previous.as_ref(), &hostname, &mut repaired)?;
    let (user, password) = write_credentials(&root, previous.is_some(), &opts.user, opts.password.as_deref())?;
    make_dir(&root.join("bin"), 0o755)?;
    copy_executable(&exe, &root.join(BINARY))?;
    make_dir(&root.join(STORAGE), 0o755)?;

    let config = Config {
        version: 1,
        hostname,
        listen: format!("0.0.0.0:{port}"),
        port,
        tls_cert: SERVER_CERT.into(),
        tls_key: SERVER_KEY.into(),
        ca_cert: ca_file.as_ref().map(|_| CA_CERT.into()),
        htpasswd: HTPASSWD.into(),
        storage: STORAGE.into(),
    };
    let unit = unit_text(&root);
    store::write_file(&root.join(UNIT_NAME), unit.as_bytes(), Commit::mode(0o644))?;
    // Last: from here on the root counts as installed.
    config.save(&root)?;
    let left = problems(&root);
    if !left.is_empty() {
        return Err(usage(format!(
            "{}: the install did not leave a consistent root: {}",
            root.display(),
            left.join("; ")
        )));
    }

    let service = start_service(&root, &unit, opts.start);
    Ok(Installed {
        config,
        root,
        fresh: true,
        user,
        password_chosen: opts.password.is_some() && password.is_some(),
        password: password.filter(|_| opts.password.is_none()),
        ca_file,
        service,
        ignored: Vec::new(),
        repaired,
        password_reset: false,
    })
}

/// The operator's certificate and key files.
type CertAndKey<'a> = (&'a Path, &'a Path);

/// Check the options before anything is written: port, user, the hostname asked for
/// (returned checked) and the operator's TLS pair (both files or neither).
fn check_options(opts: &InstallOptions) -> Result<(Option<String>, Option<CertAndKey<'_>>)> {
    check_port(opts.port)?;
    check_user(&opts.user)?;
    let asked = opts.hostname.as_deref().map(check_hostname).transpose()?;
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => return Err(usage("--tls-cert and --tls-key go together: give both or neither")),
    };
    Ok((asked, tls))
}

/// The root's TLS files: generated (keeping a previous run's that are still good), the
/// operator's pair copied in, or, for a root installed with the operator's pair, checked
/// only. Returns the CA clients must trust when install generated one.
fn write_tls(
    root: &Path,
    tls: Tls,
    previous: Option<&Config>,
    hostname: &str,
    repaired: &mut Vec<String>,
) -> Result<Option<PathBuf>> {
    make_dir(&root.join("tls"), 0o755)?;
    // A root installed with the operator's certificate: it cannot be made here, only checked.
    let operators = previous.filter(|c| c.ca_cert.is_none());
    match (tls, operators) {
        (Tls::Generate, Some(config)) => {
            let (cert, key) = (config.resolve(root, &config.tls_cert), config.resolve(root, &config.tls_key));
            read_pair(&cert, &key).map_err(|e| {
                usage(format!(
                    "{e}; {} serves the operator's certificate: give it again with --tls-cert and --tls-key",
                    root.display()
                ))
            })?;
            Ok(None)
        }
        (Tls::Generate, None) => {
            generate_or_keep_tls(root, hostname, repaired)?;
            Ok(Some(root.join(CA_CERT)))
        }
        (Tls::Operator(pair), _) => {
            store::write_file(&root.join(SERVER_KEY), &pair.key_pem, Commit::mode(0o600))?;
            store::write_file(&root.join(SERVER_CERT), &pair.cert_pem, Commit::mode(0o644))?;
            // A CA left by a killed install that generated one is not this root's.
            for stale in [CA_KEY, CA_CERT] {
                let path = root.join(stale);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
                    _ => {}
                }
            }
            Ok(None)
        }
    }
}

/// The password of a finished install was shown then: when `repairing`, keep it while
/// its htpasswd holds a user. Otherwise (first install, or one killed before it said
/// anything) `chosen` or a new one for `user`. Returns the user and the password made, if
/// any.
fn write_credentials(
    root: &Path,
    repairing: bool,
    user: &str,
    chosen: Option<&str>,
) -> Result<(String, Option<String>)> {
    let htpasswd = root.join(HTPASSWD);
    let kept_user = if repairing { first_user(&htpasswd).ok().flatten() } else { None };
    match kept_user {
        Some(kept) => Ok((kept, None)),
        None => {
            let password = match chosen {
                Some(p) => p.to_string(),
                None => generate_password()?,
            };
            users::create(&htpasswd, user, &password)?;
            Ok((user.to_string(), Some(password)))
        }
    }
}

/// Write a CA and a server certificate, keeping what a previous run left that is still
/// good: a CA whose key matches it, and a server pair it signed for `hostname`. What was
/// replaced is added to `repaired`.
fn generate_or_keep_tls(root: &Path, hostname: &str, repaired: &mut Vec<String>) -> Result<()> {
    let (ca_cert_path, ca_key_path) = (root.join(CA_CERT), root.join(CA_KEY));
    let (cert_path, key_path) = (root.join(SERVER_CERT), root.join(SERVER_KEY));
    let old_ca = read_pair(&ca_cert_path, &ca_key_path).ok().and_then(|(cert_pem, key_pem)| {
        let key = KeyPair::from_pem(std::str::from_utf8(&key_pem).ok()?).ok()?;
        Some((cert_pem, key))
    });
    if let Some((ca_pem, _)) = &old_ca {
        let server_good = read_pair(&cert_path, &key_path)
            .ok()
            .is_some_and(|(cert, _)| verify_chain(ca_pem, &cert, hostname).is_ok());
        if server_good {
            return Ok(());
        }
    }
    let addresses = host_addresses();
    // A kept CA must still be able to vouch for this host's names (its name constraints
    // were fixed when it was made); otherwise a new CA, which clients must trust again.
    let reused = match old_ca {
        Some((ca_pem, ca_key)) => {
            let pems = generate_tls(hostname, &addresses, Some(ca_key))?;
            match verify_chain(&ca_pem, pems.server_cert.as_bytes(), hostname) {
                Ok(()) => {
                    repaired.push(format!(
                        "{} and {} (reissued by the CA kept)",
                        cert_path.display(),
                        key_path.display()
                    ));
                    Some(pems)
                }
                Err(e) => {
                    repaired.push(format!(
                        "{} (a new CA, which clients must trust again: the old one cannot vouch for {hostname}: {e})",
                        ca_cert_path.display()
                    ));
                    None
                }
            }
        }
        None => {
            if ca_cert_path.exists() {
                repaired.push(format!("{} (a new CA: the old one was unusable)", ca_cert_path.display()));
            }
            None
        }
    };
    let pems = match reused {
        Some(pems) => pems,
        None => {
            let pems = generate_tls(hostname, &addresses, None)?;
            store::write_file(&ca_key_path, pems.ca_key.as_bytes(), Commit::mode(0o600))?;
            store::write_file(&ca_cert_path, pems.ca_cert.as_bytes(), Commit::mode(0o644))?;
            pems
        }
    };
    store::write_file(&key_path, pems.server_key.as_bytes(), Commit::mode(0o600))?;
    store::write_file(&cert_path, pems.server_cert.as_bytes(), Commit::mode(0o644))
}

/// What is wrong with the root's files, each naming its file; empty: the root is installed.
/// Checked, not assumed: config.json parses, the server certificate parses and goes with
/// server.key, the CA (when install made one) parses and signed it for the configured
/// hostname, htpasswd holds a user, the executable and the storage exist.
pub fn problems(root: &Path) -> Vec<String> {
    let config = match Config::load(root) {
        Ok(c) => c,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    let (cert, key) = (config.resolve(root, &config.tls_cert), config.resolve(root, &config.tls_key));
    match read_pair(&cert, &key) {
        Err(e) => problems.push(e.to_string()),
        Ok((cert_pem, _)) => {
            if let Some(ca) = &config.ca_cert {
                let ca = config.resolve(root, ca);
                match fs::read(&ca) {
                    Err(e) => problems.push(format!("{}: {e}", ca.display())),
                    Ok(ca_pem) => {
                        if let Err(e) = verify_chain(&ca_pem, &cert_pem, &config.hostname) {
                            problems.push(format!("{}: {e}", cert.display()));
                        }
                    }
                }
            }
        }
    }
    let htpasswd = config.resolve(root, &config.htpasswd);
    match first_user(&htpasswd) {
        Ok(Some(_)) => {}
        Ok(None) => problems.push(format!("{}: holds no user", htpasswd.display())),
        Err(e) => problems.push(e.to_string()),
    }
    let binary = root.join(BINARY);
    if !binary.is_file() {
        problems.push(format!("{}: missing", binary.display()));
    }
    let storage = config.storage_dir(root);
    if !storage.is_dir() {
        problems.push(format!("{}: missing", storage.display()));
    }
    problems
}

/// Take the root's install lock, waiting for another run that holds it. Released when the
/// file is dropped (or the process ends, killed or not).
pub(super) fn lock_root(root: &Path) -> Result<File> {
    let not_writable =
        |path: &Path, e: std::io::Error| usage(format!("the registry root is not writable: {}: {e}", path.display()));
    let path = store::State::InstallLock.under(root);
    let dir = parent(&path);
    fs::create_dir_all(dir).map_err(|e| not_writable(dir, e))?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| not_writable(&path, e))?;
    store::lock_exclusive(&file, &path, true)?;
    Ok(file)
}

/// The root is installed already: read it, touch nothing, and note what was asked
/// differently.
fn existing(root: &Path, opts: &InstallOptions, hostname: Option<&str>) -> Result<Installed> {
    let root = root.canonicalize().at(root)?;
    let config = Config::load(&root)?;
    let htpasswd = config.resolve(&root, &config.htpasswd);
    let user = first_user(&htpasswd)?.unwrap_or_else(|| opts.user.clone());
    let mut ignored = Vec::new();
    if let Some(h) = hostname {
        if h != config.hostname {
            ignored.push(format!("hostname {h} (the root serves {})", config.hostname));
        }
    }
    // Defaults are not reported: they were not asked for.
    if opts.port != DEFAULT_PORT && opts.port != config.port {
        ignored.push(format!("port {} (the root serves port {})", opts.port, config.port));
    }
    if opts.user != DEFAULT_USER && opts.user != user {
        ignored.push(format!("user {} (the root's initial user is {user})", opts.user));
    }
    if opts.password.is_some() {
        ignored.push(
            "--password-file (the root's users keep their passwords; `airlift user passwd` changes one)".to_string(),
        );
    }
    if let Some(cert) = &opts.tls_cert {
        ignored.push(format!(
            "--tls-cert {} (the root uses {}; replace that file and its key to change it)",
            cert.display(),
            config.resolve(&root, &config.tls_cert).display()
        ));
    }
    Ok(Installed { ignored, ..unchanged(config, root, user, None) })
}

/// An installed root as it stands (nothing generated, the service left as it is), with
/// `password` when this run made one.
fn unchanged(config: Config, root: PathBuf, user: String, password: Option<String>) -> Installed {
    let ca_file = config.ca_cert.as_ref().map(|p| config.resolve(&root, p));
    let service = ServiceState {
        unit: root.join(UNIT_NAME),
        status: ServiceStatus::Unchanged,
        start_systemd: start_systemd_line(&root),
        start_manual: start_manual_line(&root),
    };
    Installed {
        config,
        root,
        fresh: false,
        user,
        password,
        password_chosen: false,
        ca_file,
        service,
        ignored: Vec::new(),
        repaired: Vec::new(),
        password_reset: false,
    }
}

/// `install --reset-password`: a new password for `user` (default: the root's initial
/// user, the first of htpasswd), `chosen` (`--password-file`, never shown) or generated,
/// written by `users::set_password` (atomically, under the install lock; other users are
/// kept). The root must be installed. A running `airlift serve` takes it within a second.
pub fn reset_password(root: &Path, user: Option<&str>, chosen: Option<String>) -> Result<Installed> {
    if let Some(u) = user {
        check_user(u)?;
    }
    let root = installed_root(root)?;
    let config = Config::load(&root)?;
    let path = config.resolve(&root, &config.htpasswd);
    let user = match user {
        Some(u) => u.to_string(),
        None => first_user(&path)?.ok_or_else(|| usage(format!("{}: holds no user", path.display())))?,
    };
    let password_chosen = chosen.is_some();
    let password = match chosen {
        Some(p) => p,
        None => generate_password()?,
    };
    users::set_password(&root, &user, &password)?;
    let shown = (!password_chosen).then_some(password);
    Ok(Installed { password_reset: true, password_chosen, ..unchanged(config, root, user, shown) })
}

/// `root`, canonical, when it is an installed root (`problems` finds nothing); else a
/// usage error that says what is wrong and to install it first.
pub(super) fn installed_root(root: &Path) -> Result<PathBuf> {
    let problems = problems(root);
    if !problems.is_empty() {
        return Err(usage(format!(
            "{} is not an installed registry root ({}); run `airlift install --root {}` first",
            root.display(),
            problems.join("; "),
            root.display()
        )));
    }
    root.canonicalize().at(root)
}

/// What an install did, for the caller to present: the human summary, the notes, the
/// credentials made and the JSON document (`commands::install::present` prints them).
impl Installed {
    /// The summary for stdout: what was done, how to reach, trust and log in to the
    /// registry, and the service's state. The password and the pull-secret entry appear
    /// only when this run made the password (a fresh install, `--reset-password`).
    pub fn summary(&self) -> String {
        let root = self.root.display();
        let mut text = vec![if self.password_reset {
            format!("New password for {} in {root}", self.user)
        } else if !self.repaired.is_empty() {
            format!("Registry in {root} repaired (it was half installed)")
        } else if self.fresh {
            format!("Registry installed in {root}")
        } else {
            format!("{root} is already a registry root: nothing changed.")
        }];
        text.push(format!("  URL:       {}", self.config.url()));
        match &self.password {
            Some(p) => {
                text.push(format!("  user:      {}", self.user));
                text.push(format!("  password:  {p}"));
                text.push("             (shown only now: the root keeps only its bcrypt hash)".into());
            }
            None if self.password_chosen => {
                text.push(format!("  user:      {} (with the password of --password-file)", self.user))
            }
            None => {
                text.push(format!("  user:      {} (its password was shown when the root was installed)", self.user))
            }
        }
        match &self.ca_file {
            Some(ca) => text.push(format!("  CA:        {}", ca.display())),
            None => text.push(format!(
                "  TLS:       {} (the operator's certificate: clients must trust its issuer)",
                self.server_cert().display()
            )),
        }
        if let Some((rhel, debian)) = self.trust_commands() {
            text.push(String::new());
            text.push("Trust the CA on every client (as root):".into());
            text.push(format!("  RHEL, Fedora:    {rhel}"));
            text.push(format!("  Debian, Ubuntu:  {debian}"));
        }
        if let Some(secret) = self.pull_secret() {
            text.push(String::new());
            text.push("Pull-secret entry (merge it into the cluster's pull secret):".into());
            text.push(format!("  {secret}"));
        }
        text.push(String::new());
        text.push("Log in:".into());
        text.push(format!("  {}", self.podman_login()));
        text.push(String::new());
        text.extend(self.service.summary());
        text.join("\n")
    }

    /// Warnings for stderr: options a rerun ignored, what was repaired, a service that
    /// failed to start.
    pub fn notes(&self) -> Vec<String> {
        let root = self.root.display();
        let mut notes: Vec<String> =
            self.ignored.iter().map(|note| format!("ignored {note}: {root} was already installed")).collect();
        notes.extend(self.repaired.iter().map(|note| format!("repaired: {note}")));
        if let ServiceStatus::Failed(error) = &self.service.status {
            notes.push(format!("the registry is installed but its service did not start: {error}"));
        }
        notes
    }

    /// The credentials this run made (none unless it made the password): what a run must
    /// keep for every JSON document it prints, even one that fails later.
    pub fn credentials(&self) -> Option<serde_json::Value> {
        let password = self.password.as_ref()?;
        Some(json!({
            "registry": self.registry(),
            "user": self.user,
            "password": password,
            "pull_secret": self.pull_secret(),
            "ca_file": self.ca_file,
        }))
    }

    /// The JSON document describing the install.
    pub fn document(&self) -> serde_json::Value {
        let mut doc = json!({
            "status": "ok",
            "fresh": self.fresh,
            "root": self.root,
            "url": self.config.url(),
            "registry": self.registry(),
            "hostname": self.config.hostname,
            "port": self.config.port,
            "user": self.user,
            "ca_file": self.ca_file,
            "tls_cert": self.server_cert(),
            "podman_login": self.podman_login(),
            "service": self.service.document(),
        });
        if let Some(p) = &self.password {
            doc["password"] = json!(p);
        }
        if let Some(secret) = self.pull_secret() {
            doc["pull_secret"] = secret;
        }
        if let Some((rhel, debian)) = self.trust_commands() {
            doc["trust"] = json!({ "rhel": rhel, "debian": debian });
        }
        if !self.ignored.is_empty() {
            doc["ignored"] = json!(self.ignored);
        }
        if !self.repaired.is_empty() {
            doc["repaired"] = json!(self.repaired);
        }
        if self.password_reset {
            doc["password_reset"] = json!(true);
        }
        if self.password_chosen {
            doc["password_chosen"] = json!(true);
        }
        doc
    }

    fn server_cert(&self) -> PathBuf {
        self.config.resolve(&self.root, &self.config.tls_cert)
    }
}

impl ServiceState {
    /// The summary's lines about the service: its state and, unless it runs, how to start it.
    fn summary(&self) -> Vec<String> {
        let why = match &self.status {
            ServiceStatus::Started => {
                return vec![format!("Service: enabled and started (systemctl status {UNIT_NAME})")]
            }
            ServiceStatus::NotStarted(why) => format!("not started: {why}"),
            ServiceStatus::Failed(error) => format!("failed to start: {error}"),
            ServiceStatus::Unchanged => format!("left as it was (unit {})", self.unit.display()),
        };
        vec![
            format!("Service: {why}. To start the registry:"),
            format!("  with systemd, as root:  {}", self.start_systemd),
            format!("  without systemd:        {}", self.start_manual),
        ]
    }

    fn document(&self) -> serde_json::Value {
        let mut doc = json!({
            "state": self.status.label(),
            "unit": self.unit,
            "start_systemd": self.start_systemd,
            "start_manual": self.start_manual,
        });
        match &self.status {
            ServiceStatus::NotStarted(why) => doc["reason"] = json!(why),
            ServiceStatus::Failed(error) => doc["error"] = json!(error),
            _ => {}
        }
        doc
    }
}

// ---- checks ----

fn check_port(port: u16) -> Result<()> {
    if port == 0 {
        return Err(usage("--port 0 is not a port the registry can be reached on: give one in 1-65535 (default 8443)"));
    }
    Ok(())
}

/// A DNS name (letters, digits, '-', dot-separated labels of 1-63, at most 253) or an IPv4
/// address, lower-cased. IPv6 addresses are refused: the registry's name is written
/// `HOST:PORT` by clients and in pull secrets.
pub fn check_hostname(name: &str) -> Result<String> {
    let host = name.to_ascii_lowercase();
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(host);
    }
    let bad = |why: &str| {
        usage(format!(
            "invalid hostname {name:?}: {why}; give the DNS name (or IPv4 address) clients use to reach this host with --hostname"
        ))
    };
    if host.parse::<Ipv6Addr>().is_ok() {
        return Err(bad("IPv6 addresses cannot be used as a registry name"));
    }
    if host.is_empty() || host.len() > 253 {
        return Err(bad("a DNS name has 1 to 253 characters"));
    }
    let labels: Vec<&str> = host.split('.').collect();
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated label has 1 to 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(bad("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label cannot start or end with '-'"));
        }
    }
    if labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad("the last label cannot be all digits (and this is not an IPv4 address)"));
    }
    Ok(host)
}

/// This host's name, from the kernel.
fn default_hostname() -> Result<String> {
    let path = Path::new("/proc/sys/kernel/hostname");
    let name = fs::read_to_string(path).at(path)?;
    check_hostname(name.trim()).map_err(|e| usage(format!("this host's name ({path}): {e}", path = path.display())))
}

/// Create the root if needed and make sure it is ours to fill: holding nothing but what
/// install or a killed install writes. Returns it canonical (the unit names it). Writes
/// nothing into an existing directory.
fn open_root(root: &Path) -> Result<PathBuf> {
    // Checked before anything is created, and again once symlinks are resolved.
    check_unit_path(&std::path::absolute(root).at(root)?)?;
    fs::create_dir_all(root).map_err(|e| usage(format!("cannot create the registry root {}: {e}", root.display())))?;
    let root = root.canonicalize().at(root)?;
    check_unit_path(&root)?;
    const OURS: &[&str] =
        &[config::CONFIG_FILE, HTPASSWD, "tls", "bin", STORAGE, UNIT_NAME, store::STATE_DIR, "serve.log", "lost+found"];
    for entry in fs::read_dir(&root).at(&root)? {
        let name = entry.at(&root)?.file_name();
        let name = name.to_string_lossy();
        if !OURS.contains(&name.as_ref()) && !name.starts_with(store::TEMP_PREFIX) {
            return Err(usage(format!(
                "{} is not empty and is not a registry root (it holds {name}); install into a new or empty directory",
                root.display()
            )));
        }
    }
    Ok(root)
}

/// Under the install lock (nobody else writes in the root meanwhile): check the root is
/// writable and remove the temp files a killed install left.
fn prepare_root(root: &Path) -> Result<()> {
    // Writable? (root may read-only bind-mount, or the directory may belong to someone else.)
    store::temp_in(root).map_err(|e| usage(format!("the registry root is not writable: {e}")))?;
    for dir in [root.to_path_buf(), root.join("tls"), root.join("bin")] {
        store::purge_temps_in(&dir)?;
    }
    Ok(())
}

/// The root's path goes into the systemd unit unquoted: no spaces, quotes, `%`, `$` or backslashes.
fn check_unit_path(path: &Path) -> Result<()> {
    let text = path.to_str().unwrap_or("");
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | ','));
    if !plain {
        return Err(usage(format!(
            "{}: the registry root's path goes into a systemd unit; use one made of letters, digits and / . _ - + @ ,",
            path.display()
        )));
    }
    Ok(())
}

// ---- TLS ----

enum Tls {
    Generate,
    Operator(OperatorPair),
}

struct OperatorPair {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// Read the operator's certificate chain and key, and check that they parse, that the
/// key is the certificate's, and that the certificate names `hostname`.
fn load_operator_tls(cert_path: &Path, key_path: &Path, hostname: &str) -> Result<OperatorPair> {
    use rustls::pki_types::ServerName;
    use rustls::server::ParsedCertificate;

    let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
    let certs = parse_certs(&cert_pem, cert_path)?;
    let parsed = ParsedCertificate::try_from(&certs[0])
        .map_err(|e| usage(format!("{}: not a usable X.509 certificate: {e}", cert_path.display())))?;
    let name =
        ServerName::try_from(hostname.to_string()).map_err(|e| usage(format!("invalid hostname {hostname:?}: {e}")))?;
    rustls::client::verify_server_name(&parsed, &name).map_err(|e| {
        usage(format!(
            "{}: the certificate is not valid for {hostname} ({e}); clients would refuse it: pass the --hostname it names",
            cert_path.display()
        ))
    })?;
    Ok(OperatorPair { cert_pem, key_pem })
}

/// A PEM certificate chain, at least one certificate.
fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| usage(format!("{}: not a PEM certificate chain: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(usage(format!(
            "{}: no certificate in it (a PEM file with -----BEGIN CERTIFICATE----- is expected)",
            path.display()
        )));
    }
    Ok(certs)
}

/// Read a certificate chain and its key (PEM) and check that they parse and that the key
/// is the first certificate's. Returns both files' bytes.
pub(super) fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    use rustls::server::ParsedCertificate;

    let cert_pem = fs::read(cert_path).at(cert_path)?;
    let key_pem = fs::read(key_path).at(key_path)?;
    let certs = parse_certs(&cert_pem, cert_path)?;
    let parsed = ParsedCertificate::try_from(&certs[0])
        .map_err(|e| usage(format!("{}: not a usable X.509 certificate: {e}", cert_path.display())))?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| usage(format!("{}: not a PEM private key: {e}", key_path.display())))?
        .ok_or_else(|| {
            usage(format!(
                "{}: no private key in it (a PEM file with -----BEGIN PRIVATE KEY----- is expected)",
                key_path.display()
            ))
        })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| usage(format!("{}: unsupported or invalid private key: {e}", key_path.display())))?;
    let mismatch = || {
        usage(format!("{} is not the private key of the certificate in {}", key_path.display(), cert_path.display()))
    };
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            // rustls cannot say for this key type; rcgen derives the public key instead.
            let pair = KeyPair::try_from(&key).map_err(|e| {
                usage(format!("{}: cannot check this key against the certificate: {e}", key_path.display()))
            })?;
            if pair.public_key_der() != parsed.subject_public_key_info().as_ref() {
                return Err(mismatch());
            }
        }
        Err(rustls::Error::InconsistentKeys(_)) => return Err(mismatch()),
        Err(e) => return Err(usage(format!("{}: {e}", cert_path.display()))),
    }
    Ok((cert_pem, key_pem))
}

/// Whether a client trusting `ca_pem` accepts the server chain `cert_pem` for `hostname`
/// (signature, validity, names, name constraints), as podman or skopeo would check it.
/// The key is checked against the certificate by `read_pair`.
pub(super) fn verify_chain(ca_pem: &[u8], cert_pem: &[u8], hostname: &str) -> std::result::Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|e| format!("the CA is not a PEM certificate: {e}"))?;
        roots.add(cert).map_err(|e| format!("the CA is not a usable certificate: {e}"))?;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("the CA cannot verify certificates: {e}"))?;
    let certs = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    let (leaf, chain) = certs.split_first().ok_or("no certificate in it")?;
    let name = ServerName::try_from(hostname.to_string()).map_err(|e| format!("invalid hostname {hostname}: {e}"))?;
    verifier
        .verify_server_cert(leaf, chain, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| format!("not a certificate the CA signed for {hostname}: {e}"))
}

struct GeneratedTls {
    ca_cert: String,
    ca_key: String,
    server_cert: String,
    server_key: String,
}

/// A CA (valid 20 years) and a server certificate it signs (10 years), ECDSA P-256, the
/// server's SAN being the hostname, localhost and `addresses`. With `ca_key`, the CA is
/// the one made before with that key for this hostname (same name, same key identifier):
/// only the server certificate is new, and `ca_cert` is not to be written.
fn generate_tls(hostname: &str, addresses: &BTreeSet<IpAddr>, ca_key: Option<KeyPair>) -> Result<GeneratedTls> {
    let names = Names::for_host(hostname, addresses);
    let ca_key = match ca_key {
        Some(key) => key,
        None => KeyPair::generate().map_err(certificate_error)?,
    };
    let ca_name = format!("airlift registry CA {}", short(hostname));
    let ca_cert = ca_params(ca_name, &names)?.self_signed(&ca_key).map_err(certificate_error)?;
    let key = KeyPair::generate().map_err(certificate_error)?;
    let server_cert = server_params(hostname, &names)?.signed_by(&key, &ca_cert, &ca_key).map_err(certificate_error)?;
    Ok(GeneratedTls {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        server_cert: server_cert.pem(),
        server_key: key.serialize_pem(),
    })
}

/// The names a server certificate carries, and its CA may vouch for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Names {
    /// The hostname (a name or an address), localhost and `addresses`.
    pub fn for_host(hostname: &str, addresses: &BTreeSet<IpAddr>) -> Names {
        let mut names = Names { dns: BTreeSet::from(["localhost".to_string()]), ips: addresses.clone() };
        names.add(hostname);
        names
    }

    /// Add a checked name or an address.
    pub fn add(&mut self, name: &str) {
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                self.ips.insert(ip);
            }
            Err(_) => {
                self.dns.insert(name.to_string());
            }
        }
    }
}

pub(super) fn certificate_error(e: rcgen::Error) -> Error {
    usage(format!("generating the registry's certificates: {e}"))
}

/// Valid from a day back (for clients whose clock is a little behind) for `days`.
fn validity(params: &mut CertificateParams, days: u64) {
    let start = crate::time::now().saturating_sub(DAY);
    let at = |secs: u64| rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs);
    params.not_before = at(start);
    params.not_after = at(start + days * DAY);
}

/// A CA named `common_name` (valid 20 years) that may only vouch for `names`: clients
/// trust it system-wide, and its key lives on the registry host, so a stolen ca.key
/// cannot impersonate other sites to those clients. Loopback is allowed whole
/// (127.0.0.0/8), so a renewal may add another loopback address.
pub(super) fn ca_params(common_name: String, names: &Names) -> Result<CertificateParams> {
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::OrganizationName, "airlift");
    ca.distinguished_name.push(DnType::CommonName, common_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut permitted: Vec<GeneralSubtree> = names.dns.iter().cloned().map(GeneralSubtree::DnsName).collect();
    let mut subnets = BTreeSet::new();
    for ip in &names.ips {
        subnets.insert(match ip {
            IpAddr::V4(v4) if v4.is_loopback() => (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
            IpAddr::V4(_) => (*ip, 32),
            IpAddr::V6(_) => (*ip, 128),
        });
    }
    permitted.extend(
        subnets.into_iter().map(|(ip, prefix)| GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip, prefix))),
    );
    ca.name_constraints = Some(NameConstraints { permitted_subtrees: permitted, excluded_subtrees: Vec::new() });
    validity(&mut ca, CA_VALID_DAYS);
    ca.serial_number = Some(random_serial()?);
    Ok(ca)
}

/// A server certificate for `hostname` (valid 10 years) with `names` as its SAN.
pub(super) fn server_params(hostname: &str, names: &Names) -> Result<CertificateParams> {
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::OrganizationName, "airlift");
    leaf.distinguished_name.push(DnType::CommonName, short(hostname));
    let mut sans = Vec::new();
    for name in &names.dns {
        sans.push(SanType::DnsName(name.clone().try_into().map_err(certificate_error)?));
    }
    sans.extend(names.ips.iter().copied().map(SanType::IpAddress));
    leaf.subject_alt_names = sans;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    validity(&mut leaf, SERVER_VALID_DAYS);
    leaf.serial_number = Some(random_serial()?);
    Ok(leaf)
}

/// A common name is at most 64 characters; the SAN carries the full name.
pub(super) fn short(name: &str) -> String {
    name.chars().take(40).collect()
}

/// 16 random bytes, positive.
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    random(&mut bytes)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The host's addresses (every interface, IPv4 and IPv6 except link-local), loopback
/// included: those the kernel lists over rtnetlink, or only loopback when it cannot.
pub fn host_addresses() -> BTreeSet<IpAddr> {
    let mut set: BTreeSet<IpAddr> = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)].into();
    // Link-local addresses need a zone to be used: no client names them.
    let link_local = |ip: &IpAddr| matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
    set.extend(interface_addresses().unwrap_or_default().into_iter().filter(|ip| !link_local(ip)));
    set.retain(|ip| !ip.is_unspecified());
    set
}

// rtnetlink, as linux/netlink.h, linux/rtnetlink.h and linux/if_addr.h define it.
const NLMSG_HDRLEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Every address of every interface, as getifaddrs(3) gets them: one RTM_GETADDR dump
/// over a netlink socket (rustix, no unsafe), read to its NLMSG_DONE.
fn interface_addresses() -> std::io::Result<Vec<IpAddr>> {
    use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};
    let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    let mut request = [0u8; NLMSG_HDRLEN + IFADDRMSG_LEN];
    request[0..4].copy_from_slice(&((NLMSG_HDRLEN + IFADDRMSG_LEN) as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETADDR.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // The ifaddrmsg that follows asks for every family (AF_UNSPEC: zeros).
    send(&fd, &request, SendFlags::empty())?;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (_, n) = recv(&fd, &mut buf[..], RecvFlags::empty())?;
        let datagram = buf.get(..n).ok_or_else(|| std::io::Error::other("rtnetlink: a message was truncated"))?;
        if n == 0 || addresses_in(datagram, &mut found)? {
            return Ok(found);
        }
    }
}

/// Add the addresses of one datagram of rtnetlink messages to `found`; true once the
/// dump ended.
fn addresses_in(data: &[u8], found: &mut Vec<IpAddr>) -> std::io::Result<bool> {
    let head = |h: &[u8]| (u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize, u16::from_ne_bytes([h[4], h[5]]));
    for record in records(data, NLMSG_HDRLEN, head) {
        let (kind, body) = record.ok_or_else(|| std::io::Error::other("rtnetlink: a malformed message"))?;
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => return Err(std::io::Error::other("rtnetlink: the address dump failed")),
            RTM_NEWADDR => found.extend(address_of(body)),
            _ => {}
        }
    }
    Ok(false)
}

/// The address of one RTM_NEWADDR message: IFA_LOCAL (the interface's own on a
/// point-to-point link, where IFA_ADDRESS is the peer's), else IFA_ADDRESS, as getifaddrs
/// chooses. A cut-off attribute ends the list.
fn address_of(msg: &[u8]) -> Option<IpAddr> {
    let family = *msg.first()?;
    let head = |h: &[u8]| (u16::from_ne_bytes([h[0], h[1]]) as usize, u16::from_ne_bytes([h[2], h[3]]));
    let (mut local, mut address) = (None, None);
    for (kind, value) in records(msg.get(IFADDRMSG_LEN..)?, 4, head).map_while(|r| r) {
        match kind {
            IFA_LOCAL => local = Some(value),
            IFA_ADDRESS => address = Some(value),
            _ => {}
        }
    }
    let bytes = local.or(address)?;
    match family {
        AF_INET => <[u8; 4]>::try_from(bytes).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        AF_INET6 => <[u8; 16]>::try_from(bytes).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// Netlink's records (messages, attributes): 4-byte aligned, each with a header of `header`
/// bytes from which `head` reads the record's length (header included) and kind. Each
/// record's kind and body, until the data ends; `None` for a record that does not fit.
fn records(
    mut data: &[u8],
    header: usize,
    head: impl Fn(&[u8]) -> (usize, u16),
) -> impl Iterator<Item = Option<(u16, &[u8])>> {
    std::iter::from_fn(move || {
        if data.len() < header {
            return None;
        }
        let (len, kind) = head(data);
        if len < header || len > data.len() {
            data = &[];
            return Some(None);
        }
        let body = &data[header..len];
        data = &data[len.next_multiple_of(4).min(data.len())..];
        Some(Some((kind, body)))
    })
}

fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| usage(format!("reading the operating system's randomness: {e}")))
}

// ---- files ----

fn make_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).at(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).at(dir)
}

fn copy_executable(from: &Path, to: &Path) -> Result<()> {
    let mut source = File::open(from).at(from)?;
    let mut temp = store::temp_in(parent(to))?;
    std::io::copy(&mut source, temp.as_file_mut()).at(temp.path())?;
    store::commit_file(temp, to, Commit::mode(0o755))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

// ---- systemd ----

/// The unit: the root's own copy of airlift serves the root, restarted on failure, with
/// the file system read-only except the root. The root's path is plain (prepare_root), so
/// it needs no quoting. Options are those systemd 239 (RHEL 8) knows.
fn unit_text(root: &Path) -> String {
    let root = root.display();
    let uid = rustix::process::geteuid().as_raw();
    // Installed by another user: the service runs as that user, who owns the files.
    let user = if uid == 0 { String::new() } else { format!("User={uid}\n") };
    // A private /tmp would hide a root that lives in /tmp.
    let text = root.to_string();
    let private_tmp = if text.starts_with("/tmp/") || text.starts_with("/var/tmp/") { "" } else { "PrivateTmp=yes\n" };
    format!(
        "# Written by `airlift install`: serves the registry root {root}.\n\
         [Unit]\n\
         Description=airlift container registry ({root})\n\
         Documentation=man:airlift-serve(1)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         # With SELinux enforcing, systemd may refuse to run a binary outside /usr (status=203/EXEC):\n\
         #   semanage fcontext -a -t bin_t '{root}/bin(/.*)?' && restorecon -Rv {root}/bin\n\
         ExecStart={root}/{BINARY} serve --root {root}\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         {user}\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=read-only\n\
         ReadWritePaths={root}\n\
         {private_tmp}\
         PrivateDevices=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectControlGroups=yes\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         SystemCallArchitectures=native\n\
         CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n\
         AmbientCapabilities=CAP_NET_BIND_SERVICE\n\
         LimitNOFILE=65536\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// Whether the unit `text` (one in /etc/systemd/system) serves `root`.
pub(super) fn unit_serves(text: &str, root: &Path) -> bool {
    text.contains(&format!("\nExecStart={}/{BINARY} serve --root {}\n", root.display(), root.display()))
}

fn start_systemd_line(root: &Path) -> String {
    format!(
        "cp {}/{UNIT_NAME} {SYSTEMD_UNIT_DIR}/ && systemctl daemon-reload && systemctl enable --now {UNIT_NAME}",
        root.display()
    )
}

fn start_manual_line(root: &Path) -> String {
    let root = root.display();
    format!("nohup {root}/{BINARY} serve --root {root} >>{root}/serve.log 2>&1 &")
}

/// Install, enable and start the unit when asked, systemd runs the host and we are root.
fn start_service(root: &Path, unit: &str, start: bool) -> ServiceState {
    let status = if !start {
        ServiceStatus::NotStarted("not asked to (--no-start)".into())
    } else if !Path::new(SYSTEMD_RUNNING).is_dir() {
        ServiceStatus::NotStarted("systemd does not run this host".into())
    } else if !rustix::process::geteuid().is_root() {
        ServiceStatus::NotStarted("installing a systemd unit needs root".into())
    } else {
        enable_unit(unit)
    };
    ServiceState {
        unit: root.join(UNIT_NAME),
        status,
        start_systemd: start_systemd_line(root),
        start_manual: start_manual_line(root),
    }
}

fn enable_unit(unit: &str) -> ServiceStatus {
    let installed = Path::new(SYSTEMD_UNIT_DIR).join(UNIT_NAME);
    match fs::read_to_string(&installed) {
        Ok(existing) if existing != unit => {
            return ServiceStatus::NotStarted(format!(
                "{} exists and serves another root; it was left alone",
                installed.display()
            ))
        }
        Ok(_) => {}
        Err(_) => {
            if let Err(e) = store::write_file(&installed, unit.as_bytes(), Commit::mode(0o644)) {
                return ServiceStatus::Failed(e.to_string());
            }
        }
    }
    for args in [&["daemon-reload"][..], &["enable", "--now", UNIT_NAME][..]] {
        match Command::new("systemctl").args(args).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return ServiceStatus::Failed(format!(
                    "systemctl {} exited with {}: {}",
                    args.join(" "),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return ServiceStatus::Failed(format!("running systemctl: {e}")),
        }
    }
    ServiceStatus::Started
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["registry", "Registry.Example.COM", "a-b.c1", "10.0.0.5", "x.example.", "localhost"] {
            let r = check_hostname(ok);
            if ok.ends_with('.') {
                assert!(r.is_err(), "{ok}");
            } else {
                assert!(r.is_ok(), "{ok}: {r:?}");
            }
        }
        assert_eq!(check_hostname("Registry.Example.COM").unwrap(), "registry.example.com");
        let long_label = "a".repeat(64);
        for bad in ["", "bad_host", "-a.b", "a-.b", "a..b", "1.2.3", "999.1.1.1", "::1", "a b", &long_label, "é.fr"] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn units_name_the_root_they_serve() {
        let unit = unit_text(Path::new("/srv/registry"));
        assert!(unit_serves(&unit, Path::new("/srv/registry")));
        assert!(!unit_serves(&unit, Path::new("/srv/reg")));
    }

    #[test]
    fn rtnetlink_dumps_are_parsed_as_getifaddrs_reads_them() {
        fn message(kind: u16, body: &[u8]) -> Vec<u8> {
            let mut m = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
            m.extend(kind.to_ne_bytes());
            m.extend([0u8; 10]);
            m.extend(body);
            m
        }
        fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
            let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
            a.extend(kind.to_ne_bytes());
            a.extend(value);
            a
        }
        // A point-to-point IPv4 address: the peer in IFA_ADDRESS, the host's own in IFA_LOCAL.
        let mut v4 = vec![AF_INET, 32, 0, 0, 2, 0, 0, 0];
        v4.extend(attr(IFA_ADDRESS, &[10, 0, 0, 9]));
        v4.extend(attr(IFA_LOCAL, &[10, 0, 0, 1]));
        let mut v6 = vec![AF_INET6, 64, 0, 0, 2, 0, 0, 0];
        v6.extend(attr(IFA_ADDRESS, &Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7).octets()));
        // A cut-off attribute is ignored, not read past.
        v6.extend([200, 0, 1, 0]);
        let mut datagram = message(RTM_NEWADDR, &v4);
        datagram.extend(message(RTM_NEWADDR, &v6));
        let mut found = Vec::new();
        assert!(!addresses_in(&datagram, &mut found).unwrap());
        assert!(addresses_in(&message(NLMSG_DONE, &[0; 4]), &mut found).unwrap());
        let want: Vec<IpAddr> = vec![[10, 0, 0, 1].into(), Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7).into()];
        assert_eq!(found, want);
        assert!(addresses_in(&message(NLMSG_ERROR, &[0; 4]), &mut found).is_err());
        let mut short = message(RTM_NEWADDR, &v4);
        short[0] = 200;
        assert!(addresses_in(&short, &mut found).is_err());
    }

    #[test]
    fn addresses_include_loopback() {
        let set = host_addresses();
        assert!(set.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(set.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }
}
