//! A registry root's configuration: written by `airlift install`, read by `airlift serve`
//! and by `airlift unpack --root`.
//!
//! ```text
//! ROOT/
//!   config.json            this file
//!   htpasswd               bcrypt entries, user:$2y$...
//!   roles.json             each user's role, read-write or read-only (see users.rs)
//!   tls/ca.crt, ca.key     the CA install generated (absent when the operator brought a cert)
//!   tls/server.crt, .key   the server certificate (SAN: hostname and the host's addresses)
//!   tls/ca-next.*, ca-bundle.crt, ca-previous.crt   a CA rollover (see certs.rs)
//!   airlift-registry.service   the systemd unit install wrote
//!   storage/               registry storage (see storage.rs)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{usage, IoContext, Result};

pub const CONFIG_FILE: &str = "config.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Config format version.
    pub version: u32,
    /// Name clients use; in the certificate's SAN and in the URL.
    pub hostname: String,
    /// Address to listen on, e.g. `0.0.0.0:8443`.
    pub listen: String,
    pub port: u16,
    /// Paths relative to the root (or absolute when the operator brought their own).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// CA certificate clients must trust, when install generated one.
    pub ca_cert: Option<PathBuf>,
    pub htpasswd: PathBuf,
    pub storage: PathBuf,
}

impl Config {
    pub fn path(root: &Path) -> PathBuf {
        root.join(CONFIG_FILE)
    }

    pub fn load(root: &Path) -> Result<Config> {
        let path = Config::path(root);
        let bytes = std::fs::read(&path).map_err(|e| {
            usage(format!("{}: {e} (is {} a registry root made by `airlift install`?)", path.display(), root.display()))
        })?;
        let config: Config = serde_json::from_slice(&bytes)
            .map_err(|e| usage(format!("{}: not a valid config: {e}", path.display())))?;
        if config.version != 1 {
            return Err(usage(format!("{}: config version {} is not supported", path.display(), config.version)));
        }
        Ok(config)
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| usage(e.to_string()))?;
        bytes.push(b'\n');
        crate::store::write_atomic(&Config::path(root), &bytes)
    }

    /// A path from the config, resolved against the root.
    pub fn resolve(&self, root: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    }

    /// `https://HOST:PORT`
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.hostname, self.port)
    }

    pub fn storage_dir(&self, root: &Path) -> PathBuf {
        self.resolve(root, &self.storage)
    }
}

/// Whether `root` holds an installed registry: not only a config, but files that agree
/// with each other (see `install::problems`); a half-installed root is not installed, and
/// the next install completes it.
pub fn installed(root: &Path) -> bool {
    super::install::problems(root).is_empty()
}

/// Check the root directory exists or can be created.
pub fn ensure_root(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root).at(root)
}
