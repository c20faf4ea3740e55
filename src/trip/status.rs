//! What `airlift status` reports about an installed registry root: its URL, its
//! certificates' expiry, what it holds (counted from the root's [`receipt`]), the last
//! unpack into it (the rollback record and unfinished journals in its storage's state)
//! and the free space of the filesystem its storage is on.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{IoContext, Result};
use crate::registry::certs::{CertInfo, CA_BUNDLE, CA_NEXT_CERT};
use crate::registry::config::Config;
use crate::size::human;
use crate::store::State;
use crate::trip::receipt::{self, by_repository};

/// An installed root, as it stands.
#[derive(Debug, Clone)]
pub struct RootStatus {
    pub root: PathBuf,
    pub version: String,
    pub url: String,
    pub certificate: CertInfo,
    /// The CA install generated (none: the operator's certificate).
    pub ca: Option<CertInfo>,
    /// A CA made by `install --renew-ca`, waiting for `--renew --use-next-ca`.
    pub ca_next: Option<CertInfo>,
    pub trust_bundle: Option<PathBuf>,
    pub repositories: u64,
    /// Manifest revisions over every repository.
    pub images: u64,
    pub tags: u64,
    /// Bytes of every blob and manifest stored (each once).
    pub bytes: u64,
    pub storage: PathBuf,
    pub last_unpack: Option<LastUnpack>,
    /// Bytes an unprivileged writer may still use on the storage's filesystem, and its size.
    pub free_bytes: u64,
    pub filesystem_bytes: u64,
    /// Seconds since the Unix epoch, when this was collected.
    pub now: u64,
}

/// The last unpack into the root: when its rollback record was last written, and how
/// many unpacks are unfinished (journals left in the storage's state).
#[derive(Debug, Clone)]
pub struct LastUnpack {
    pub finished: Option<u64>,
    pub record: PathBuf,
    pub unfinished: u64,
}

/// Collect the status of the root at `root` (it must have a config; its storage is only
/// read).
pub fn of_root(root: &Path) -> Result<RootStatus> {
    let config = Config::load(root)?;
    let storage = config.storage_dir(root);
    let held = receipt::of_root(root)?;
    let totals = by_repository(&held);
    let bytes = held.blobs.iter().chain(&held.manifests).map(|h| h.size).sum();
    let ca = config.ca_cert.as_ref().map(|ca| CertInfo::read(&config.resolve(root, ca))).transpose()?;
    let ca_next = Some(root.join(CA_NEXT_CERT)).filter(|p| p.exists()).map(|p| CertInfo::read(&p)).transpose()?;
    let (free_bytes, filesystem_bytes) = crate::space::available(&storage)?;
    Ok(RootStatus {
        root: root.to_path_buf(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        url: config.url(),
        certificate: CertInfo::read(&config.resolve(root, &config.tls_cert))?,
        ca,
        ca_next,
        trust_bundle: Some(root.join(CA_BUNDLE)).filter(|p| p.exists()),
        repositories: totals.iter().filter(|t| t.name.is_some()).count() as u64,
        images: totals.iter().map(|t| t.manifests).sum(),
        tags: held.tags.len() as u64,
        bytes,
        last_unpack: last_unpack(&storage)?,
        storage,
        free_bytes,
        filesystem_bytes,
        now: crate::time::now(),
    })
}

fn last_unpack(storage: &Path) -> Result<Option<LastUnpack>> {
    let record = State::Trust.under(storage);
    let finished = match std::fs::metadata(&record) {
        Ok(m) => Some(m.modified().at(&record)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(crate::error::Error::io(&record, e)),
    };
    let finished = finished.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs());
    let journals = State::Journals.under(storage);
    let unfinished = match std::fs::read_dir(&journals) {
        Ok(entries) => entries.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).count() as u64,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(crate::error::Error::io(&journals, e)),
    };
    if finished.is_none() && unfinished == 0 {
        return Ok(None);
    }
    Ok(Some(LastUnpack { finished, record, unfinished }))
}

impl RootStatus {
    /// Warnings to show: a certificate that expires within 30 days.
    pub fn warnings(&self) -> Vec<String> {
        [Some(&self.certificate), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|c| c.expiry_warning(self.now))
            .collect()
    }

    pub fn summary(&self) -> String {
        let cert = |c: &CertInfo| {
            format!(
                "{} ({}, {} days left)",
                c.path.display(),
                crate::time::rfc3339(c.not_after.max(0) as u64),
                c.days_left(self.now)
            )
        };
        let mut text = vec![
            format!("Registry root {} (airlift {})", self.root.display(), self.version),
            format!("  URL:           {}", self.url),
            format!("  certificate:   expires {}", cert(&self.certificate)),
        ];
        if let Some(ca) = &self.ca {
            text.push(format!("  CA:            expires {}", cert(ca)));
        }
        if let Some(next) = &self.ca_next {
            text.push(format!("  next CA:       {} (switch with install --renew --use-next-ca)", cert(next)));
        }
        if let Some(bundle) = &self.trust_bundle {
            text.push(format!("  trust bundle:  {}", bundle.display()));
        }
        text.push(format!("  repositories:  {}", self.repositories));
        text.push(format!("  images:        {} manifests, {} tags", self.images, self.tags));
        text.push(format!("  stored:        {} in {}", human(self.bytes), self.storage.display()));
        text.push(format!("  free space:    {} of {}", human(self.free_bytes), human(self.filesystem_bytes)));
        let last = match &self.last_unpack {
            None => "none".to_string(),
            Some(l) => {
                let when = l.finished.map_or("none finished".to_string(), crate::time::rfc3339);
                format!("{when}; {} unfinished", l.unfinished)
            }
        };
        text.push(format!("  last unpack:   {last}"));
        text.join("\n")
    }

    pub fn document(&self) -> serde_json::Value {
        json!({
            "status": "ok",
            "exit_code": 0,
            "root": self.root,
            "version": self.version,
            "url": self.url,
            "certificate": self.certificate.document(self.now),
            "ca": self.ca.as_ref().map(|c| c.document(self.now)),
            "ca_next": self.ca_next.as_ref().map(|c| c.document(self.now)),
            "trust_bundle": self.trust_bundle,
            "repositories": self.repositories,
            "images": self.images,
            "tags": self.tags,
            "bytes": self.bytes,
            "storage": self.storage,
            "free_bytes": self.free_bytes,
            "filesystem_bytes": self.filesystem_bytes,
            "last_unpack": self.last_unpack.as_ref().map(|l| json!({
                "finished": l.finished.map(crate::time::rfc3339),
                "record": l.record,
                "unfinished": l.unfinished,
            })),
            "warnings": self.warnings(),
        })
    }
}
