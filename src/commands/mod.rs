//! One module per subcommand; each returns the status the process exits with.

pub mod catalog;
pub mod evidence;
pub mod fsck;
pub mod gc;
pub mod generate;
pub mod graph_data_copy;
pub mod install;
pub mod keygen;
pub mod list;
pub mod pack;
pub mod prune;
pub mod receipt;
pub mod repair;
pub mod serve;
pub mod status;
pub mod uninstall;
pub mod unpack;
pub mod user;
pub mod verify;

use std::path::Path;
use std::time::Duration;

use crate::bundle::feed::{self, Watch};
use crate::bundle::reader::{self, Bundle};
use crate::cli::{BundleArgs, MediaArgs};
use crate::minisign::{PublicKey, SecretKey};

/// Load a secret key, asking for its password when it is encrypted.
pub fn load_secret_key(path: &Path, password_file: Option<&Path>) -> crate::error::Result<SecretKey> {
    let password = if SecretKey::is_encrypted_file(path)? {
        Some(crate::minisign::read_password(password_file, &format!("Password for {}: ", path.display()))?)
    } else {
        None
    };
    Ok(SecretKey::from_file(path, password.as_deref())?)
}

pub fn load_public_key(path: &Path) -> crate::error::Result<PublicKey> {
    Ok(PublicKey::from_file(path)?)
}

/// The bundle the arguments name, its signature checked with `key`: from its directories
/// and the watched one (`--wait-for-media`, where a first disc is waited for when no
/// directory holds a manifest yet).
pub fn open_bundle(args: &BundleArgs, watch: Option<&Watch>, key: &PublicKey) -> crate::error::Result<Bundle> {
    let mut dirs = args.dirs.clone();
    if let Some(w) = watch {
        if !dirs.iter().any(|d| d == w.dir) {
            dirs.push(w.dir.to_path_buf());
        }
        feed::wait_for_manifest(&dirs, w)?;
    }
    reader::open_in(&dirs, args.name.as_deref(), key, watch.map(|w| w.dir))
}

/// The watched directory `--wait-for-media` names, telling the user through `tell`.
pub fn watch<'a>(args: &'a MediaArgs, tell: &'a dyn Fn(&str)) -> Option<Watch<'a>> {
    let timeout = args.wait_timeout.as_ref().map(|d| Duration::from_secs(d.0));
    args.wait_for_media.as_deref().map(|dir| Watch { dir, timeout, tell })
}

/// Threads reading and hashing chunks: as asked, else one per core (at most 8).
pub fn jobs(args: &crate::cli::ReadArgs) -> usize {
    threads(args.jobs)
}

/// `asked` threads, else one per core (at most 8).
pub fn threads(asked: Option<u16>) -> usize {
    match asked {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8),
    }
}

/// The registry client's options from the connection flags pack and `unpack --to` share.
pub fn client_options(c: &crate::cli::ConnectArgs) -> crate::client::Options {
    crate::client::Options {
        authfile: c.authfile.clone(),
        cert_dir: c.cert_dir.clone(),
        tls_verify: c.tls_verify,
        timeout: std::time::Duration::from_secs(c.timeout),
        ..crate::client::Options::default()
    }
}

/// A trip library error as the chain the command reports (`error:`, `caused by:`).
pub fn trip_error(e: crate::trip::Error) -> anyhow::Error {
    use crate::trip::Error;
    match e {
        Error::Airlift(e) => e.into(),
        Error::Io(e) => e.into(),
        Error::During { what, source } => trip_error(*source).context(what),
        e @ Error::Unfetched(_) => anyhow::Error::new(e),
    }
}
