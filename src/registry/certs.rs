//! A registry root's certificates over time: reading them back (names, validity, serial),
//! renewing the server certificate from the same CA (`install --renew`), rolling the CA
//! over (`install --renew-ca`, then `install --renew --use-next-ca`), and the certificate
//! `serve` presents, reloaded when its files change.
//!
//! ```text
//! ROOT/tls/ca.crt, ca.key            the CA that issues (what clients trust)
//! ROOT/tls/ca-next.crt, ca-next.key  a CA made by --renew-ca, not issuing yet
//! ROOT/tls/ca-bundle.crt             ca.crt and ca-next.crt: what clients trust during the overlap
//! ROOT/tls/ca-previous.crt           the CA that --use-next-ca replaced
//! ```
//! Every file is written temp file + fsync + rename, keys 0600; a key is written before
//! its certificate, so a reader that sees a new certificate finds its key.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rcgen::{CertificateParams, KeyPair};
use serde_json::json;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::config::Config;
use super::install::{self, Names, CA_CERT, CA_KEY};
use crate::error::{usage, IoContext, Result};
use crate::store::{self, Commit};

pub const CA_NEXT_CERT: &str = "tls/ca-next.crt";
pub const CA_NEXT_KEY: &str = "tls/ca-next.key";
pub const CA_BUNDLE: &str = "tls/ca-bundle.crt";
pub const CA_PREVIOUS: &str = "tls/ca-previous.crt";

/// `serve` warns, and `status` says so, when the server certificate expires within this.
pub const WARN_DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub path: PathBuf,
    pub subject: String,
    /// Hex, colon-separated, as openssl prints it.
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub names: Names,
}

impl CertInfo {
    /// The first certificate of the PEM file at `path`.
    pub fn read(path: &Path) -> Result<CertInfo> {
        let pem = fs::read(path).at(path)?;
        CertInfo::from_pem(&pem, path)
    }

    fn from_pem(pem: &[u8], path: &Path) -> Result<CertInfo> {
        let der = rustls_pemfile::certs(&mut &pem[..])
            .next()
            .ok_or_else(|| usage(format!("{}: no certificate in it", path.display())))?
            .map_err(|e| usage(format!("{}: not a PEM certificate: {e}", path.display())))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| usage(format!("{}: not an X.509 certificate: {e}", path.display())))?;
        let mut names = Names::default();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => {
                        names.dns.insert(dns.to_string());
                    }
                    GeneralName::IPAddress(bytes) => names.ips.extend(ip_of(bytes)),
                    _ => {}
                }
            }
        }
        Ok(CertInfo {
            path: path.to_path_buf(),
            subject: cert.subject().to_string(),
            serial: cert.tbs_certificate.raw_serial_as_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            names,
        })
    }

    /// Whole days until it expires (negative: expired that long ago).
    pub fn days_left(&self, now: u64) -> i64 {
        (self.not_after - now as i64).div_euclid(DAY)
    }

    /// The warning to give when it expires within [`WARN_DAYS`] (or has expired).
    pub fn expiry_warning(&self, now: u64) -> Option<String> {
        let days = self.days_left(now);
        let when = rfc3339(self.not_after);
        let text = if self.not_after <= now as i64 {
            format!("the certificate {} expired on {when}", self.path.display())
        } else if days < WARN_DAYS {
            format!("the certificate {} expires in {days} days, on {when}", self.path.display())
        } else {
            return None;
        };
        Some(format!("{text}: renew it with `airlift install --root ROOT --renew`"))
    }

    /// `{"path","subject","serial","not_before","not_after","days_left","names"}`.
    pub fn document(&self, now: u64) -> serde_json::Value {
        json!({
            "path": self.path,
            "subject": self.subject,
            "serial": self.serial,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
            "days_left": self.days_left(now),
            "names": self.names.list(),
        })
    }
}

impl Names {
    /// DNS names, then addresses.
    pub fn list(&self) -> Vec<String> {
        self.dns.iter().cloned().chain(self.ips.iter().map(|ip| ip.to_string())).collect()
    }
}

fn rfc3339(secs: i64) -> String {
    crate::time::rfc3339(secs.max(0) as u64)
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// What `install --renew` and `install --renew-ca` add and how.
#[derive(Debug, Clone, Default)]
pub struct RenewOptions {
    /// Names (`--hostname`, `--san`: DNS names or addresses) added to the current ones.
    pub add: Vec<String>,
    /// `--use-next-ca`: issue from tls/ca-next.crt and make it the CA.
    pub use_next_ca: bool,
}

/// What a renewal did.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub root: PathBuf,
    pub before: CertInfo,
    pub after: CertInfo,
    /// The CA that issued it, now tls/ca.crt.
    pub ca: CertInfo,
    /// `--use-next-ca`: the CA was switched; the old one is in tls/ca-previous.crt.
    pub ca_switched: bool,
    /// tls/ca-bundle.crt, when there is one.
    pub bundle: Option<PathBuf>,
}

/// A CA that issues: its certificate (as rcgen's issuer), key and what it says.
struct Issuer {
    pem: Vec<u8>,
    cert: rcgen::Certificate,
    key: KeyPair,
    info: CertInfo,
}

impl Issuer {
    fn load(cert_path: &Path, key_path: &Path) -> Result<Issuer> {
        let (pem, key_pem) = install::read_pair(cert_path, key_path)?;
        let text = |bytes: &[u8], path: &Path| {
            String::from_utf8(bytes.to_vec()).map_err(|_| usage(format!("{}: not a PEM file", path.display())))
        };
        let key = KeyPair::from_pem(&text(&key_pem, key_path)?)
            .map_err(|e| usage(format!("{}: not a key rcgen can sign with: {e}", key_path.display())))?;
        let params = CertificateParams::from_ca_cert_pem(&text(&pem, cert_path)?)
            .map_err(|e| usage(format!("{}: not a CA certificate: {e}", cert_path.display())))?;
        let cert = params.self_signed(&key).map_err(install::certificate_error)?;
        let info = CertInfo::from_pem(&pem, cert_path)?;
        Ok(Issuer { pem, cert, key, info })
    }

    /// The names of `names` this CA's name constraints do not permit.
    fn refuses(&self, names: &Names) -> Result<Vec<String>> {
        let der = rustls_pemfile::certs(&mut &self.pem[..])
            .next()
            .and_then(|c| c.ok())
            .ok_or_else(|| usage(format!("{}: no certificate in it", self.info.path.display())))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| usage(format!("{}: not an X.509 certificate: {e}", self.info.path.display())))?;
        let Ok(Some(constraints)) = cert.name_constraints() else { return Ok(Vec::new()) };
        let Some(permitted) = &constraints.value.permitted_subtrees else { return Ok(Vec::new()) };
        let dns_ok = |name: &str| {
            permitted.iter().any(|s| match &s.base {
                GeneralName::DNSName(c) => name == *c || name.ends_with(&format!(".{c}")),
                _ => false,
            })
        };
        let ip_ok = |ip: &IpAddr| {
            permitted.iter().any(|s| match &s.base {
                GeneralName::IPAddress(c) => in_subnet(ip, c),
                _ => false,
            })
        };
        let mut refused: Vec<String> = names.dns.iter().filter(|n| !dns_ok(n)).cloned().collect();
        refused.extend(names.ips.iter().filter(|ip| !ip_ok(ip)).map(|ip| ip.to_string()));
        Ok(refused)
    }
}

/// Whether `ip` lies in the name-constraint subnet `c` (address then mask).
fn in_subnet(ip: &IpAddr, c: &[u8]) -> bool {
    let addr: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    c.len() == 2 * addr.len() && {
        let (net, mask) = c.split_at(addr.len());
        addr.iter().zip(net).zip(mask).all(|((a, n), m)| a & m == n & m)
    }
}

/// The root, installed and with a CA install generated; canonical.
fn generated_root(root: &Path) -> Result<(PathBuf, Config)> {
    let root = install::installed_root(root)?;
    let config = Config::load(&root)?;
    if config.ca_cert.is_none() {
        return Err(usage(format!(
            "{} serves the operator's certificate ({}): renew it with its issuer and install it \
             again with --tls-cert and --tls-key",
            root.display(),
            config.resolve(&root, &config.tls_cert).display()
        )));
    }
    Ok((root, config))
}

/// The current server certificate's names plus `add` (each checked).
fn names_with(current: &CertInfo, add: &[String]) -> Result<Names> {
    let mut names = current.names.clone();
    for name in add {
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                names.ips.insert(ip);
            }
            Err(_) => names.add(&install::check_hostname(name)?),
        }
    }
    Ok(names)
}

/// `install --renew`: a new key and server certificate for the names the current one
/// carries plus `opts.add`, issued by the root's CA (tls/ca.crt, which does not change),
/// or with `use_next_ca` by tls/ca-next.crt, which then becomes tls/ca.crt (the old CA is
/// kept as tls/ca-previous.crt and stays in tls/ca-bundle.crt). A running `serve` picks
/// the new pair up within a second. Names the CA may not vouch for are refused (exit 2).
pub fn renew(root: &Path, opts: &RenewOptions) -> Result<Renewed> {
    let (root, config) = generated_root(root)?;
    let _lock = install::lock_root(&root)?;
    let (cert_path, key_path) = (config.resolve(&root, &config.tls_cert), config.resolve(&root, &config.tls_key));
    let before = CertInfo::read(&cert_path)?;
    let names = names_with(&before, &opts.add)?;
    let (ca_cert, ca_key) = if opts.use_next_ca { (CA_NEXT_CERT, CA_NEXT_KEY) } else { (CA_CERT, CA_KEY) };
    let (ca_cert, ca_key) = (root.join(ca_cert), root.join(ca_key));
    if opts.use_next_ca && !ca_cert.exists() {
        return Err(usage(format!(
            "{}: missing: there is no next CA to switch to; make one with `airlift install --root {} --renew-ca`",
            ca_cert.display(),
            root.display()
        )));
    }
    let issuer = Issuer::load(&ca_cert, &ca_key)?;
    let refused = issuer.refuses(&names)?;
    if !refused.is_empty() {
        return Err(usage(format!(
            "the CA {} may only vouch for the names it was made for, not {}: make a CA that covers them \
             with `airlift install --root {} --renew-ca --san NAME…`, then switch to it with \
             `--renew --use-next-ca` (see the README: renewing the CA)",
            ca_cert.display(),
            refused.join(", "),
            root.display()
        )));
    }
    let key = KeyPair::generate().map_err(install::certificate_error)?;
    let cert = install::server_params(&config.hostname, &names)?
        .signed_by(&key, &issuer.cert, &issuer.key)
        .map_err(install::certificate_error)?;
    install::verify_chain(&issuer.pem, cert.pem().as_bytes(), &config.hostname)
        .map_err(|e| usage(format!("the certificate renewed from {}: {e}", ca_cert.display())))?;
    store::write_file(&key_path, key.serialize_pem().as_bytes(), Commit::mode(0o600))?;
    store::write_file(&cert_path, cert.pem().as_bytes(), Commit::mode(0o644))?;
    if opts.use_next_ca {
        switch_ca(&root)?;
    }
    let bundle = Some(root.join(CA_BUNDLE)).filter(|b| b.exists());
    let ca = CertInfo { path: root.join(CA_CERT), ..issuer.info };
    Ok(Renewed { root, before, after: CertInfo::read(&cert_path)?, ca, ca_switched: opts.use_next_ca, bundle })
}

/// The next CA becomes the CA: the old certificate is kept as tls/ca-previous.crt (and
/// stays in tls/ca-bundle.crt), then the next CA's files are removed. Rerunnable: until
/// ca-next.crt is gone, `--renew --use-next-ca` does it all again.
fn switch_ca(root: &Path) -> Result<()> {
    let (ca, next) = (root.join(CA_CERT), root.join(CA_NEXT_CERT));
    let (old_pem, next_pem) = (fs::read(&ca).at(&ca)?, fs::read(&next).at(&next)?);
    if old_pem != next_pem {
        store::write_file(&root.join(CA_PREVIOUS), &old_pem, Commit::mode(0o644))?;
    }
    let next_key = root.join(CA_NEXT_KEY);
    let key_pem = fs::read(&next_key).at(&next_key)?;
    store::write_file(&root.join(CA_KEY), &key_pem, Commit::mode(0o600))?;
    store::write_file(&ca, &next_pem, Commit::mode(0o644))?;
    for path in [next, next_key] {
        fs::remove_file(&path).at(&path)?;
    }
    Ok(())
}

/// What `install --renew-ca` made.
#[derive(Debug, Clone)]
pub struct NextCa {
    pub root: PathBuf,
    pub next: CertInfo,
    /// tls/ca-bundle.crt: the current CA and the next.
    pub bundle: PathBuf,
    /// tls/ca.crt, still the CA that issues.
    pub current: CertInfo,
}

/// `install --renew-ca`: a new CA (new key, valid 20 years) for the current server
/// certificate's names plus `opts.add`, written as tls/ca-next.crt beside the CA that
/// still issues, and tls/ca-bundle.crt holding both for clients to trust during the
/// overlap. Refused while a next CA waits (switch to it first, or remove its files).
pub fn renew_ca(root: &Path, opts: &RenewOptions) -> Result<NextCa> {
    let (root, config) = generated_root(root)?;
    let _lock = install::lock_root(&root)?;
    let (next_cert, next_key) = (root.join(CA_NEXT_CERT), root.join(CA_NEXT_KEY));
    if next_cert.exists() {
        return Err(usage(format!(
            "{}: a next CA is already waiting: switch to it with `airlift install --root {} --renew --use-next-ca`, \
             or remove {} and {} to make another",
            next_cert.display(),
            root.display(),
            next_cert.display(),
            next_key.display()
        )));
    }
    let current_server = CertInfo::read(&config.resolve(&root, &config.tls_cert))?;
    let names = names_with(&current_server, &opts.add)?;
    let key = KeyPair::generate().map_err(install::certificate_error)?;
    // A name of its own: during the overlap clients hold both CAs, told apart by name.
    let day = crate::time::rfc3339(crate::time::now());
    let name = format!("airlift CA {} {}", &day[..10], install::short(&config.hostname));
    let cert = install::ca_params(name, &names)?.self_signed(&key).map_err(install::certificate_error)?;
    let ca_path = root.join(CA_CERT);
    let mut bundle = fs::read(&ca_path).at(&ca_path)?;
    if !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(cert.pem().as_bytes());
    store::write_file(&next_key, key.serialize_pem().as_bytes(), Commit::mode(0o600))?;
    store::write_file(&next_cert, cert.pem().as_bytes(), Commit::mode(0o644))?;
    let bundle_path = root.join(CA_BUNDLE);
    store::write_file(&bundle_path, &bundle, Commit::mode(0o644))?;
    Ok(NextCa { next: CertInfo::read(&next_cert)?, current: CertInfo::read(&ca_path)?, bundle: bundle_path, root })
}

impl Renewed {
    pub fn summary(&self) -> String {
        let mut text = vec![
            format!("New server certificate for {}", self.root.display()),
            format!("  certificate: {}", self.after.path.display()),
            format!("  serial:      {} (was {})", self.after.serial, self.before.serial),
            format!("  valid until: {}", rfc3339(self.after.not_after)),
            format!("  names:       {}", self.after.names.list().join(", ")),
            format!("  issued by:   {} (clients trust this file)", self.ca.path.display()),
        ];
        if self.ca_switched {
            text.push(format!(
                "  the next CA is now the CA; the old one is kept in {}",
                self.root.join(CA_PREVIOUS).display()
            ));
        }
        if let Some(bundle) = &self.bundle {
            text.push(format!("  trust bundle (old and new CA, for the overlap): {}", bundle.display()));
        }
        text.push("A running `airlift serve` presents it within a second; no restart is needed.".into());
        text.join("\n")
    }

    pub fn document(&self) -> serde_json::Value {
        let now = crate::time::now();
        json!({
            "status": "ok",
            "exit_code": 0,
            "root": self.root,
            "renewed": "server-certificate",
            "certificate": self.after.document(now),
            "previous": self.before.document(now),
            "ca": self.ca.document(now),
            "ca_switched": self.ca_switched,
            "trust_bundle": self.bundle,
            "reload": "automatic",
        })
    }
}

impl NextCa {
    pub fn summary(&self) -> String {
        [
            format!("A next CA for {} (the current CA still issues)", self.root.display()),
            format!("  next CA:       {} (valid until {})", self.next.path.display(), rfc3339(self.next.not_after)),
            format!("  trust bundle:  {} (the current CA and the next)", self.bundle.display()),
            String::new(),
            "Next steps:".into(),
            format!("  1. make every client trust {} (in place of the CA file)", self.bundle.display()),
            format!("  2. then: airlift install --root {} --renew --use-next-ca", self.root.display()),
            "  3. once every client trusts the new CA (tls/ca.crt), the bundle can go".into(),
        ]
        .join("\n")
    }

    pub fn document(&self) -> serde_json::Value {
        let now = crate::time::now();
        json!({
            "status": "ok",
            "exit_code": 0,
            "root": self.root,
            "renewed": "ca",
            "next_ca": self.next.document(now),
            "ca": self.current.document(now),
            "trust_bundle": self.bundle,
        })
    }
}

/// The certificate `serve` presents: the root's pair, reloaded by [`ServedCert::reload`]
/// when either file changes (a new inode, size or modification time).
#[derive(Debug)]
pub struct ServedCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Served>,
}

#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    info: CertInfo,
    stamp: Stamp,
    /// A changed pair that did not load: not tried again until the files change again.
    rejected: Option<Stamp>,
}

type Stamp = [(u64, i64, i64, u64); 2];

impl ServedCert {
    pub fn load(cert: &Path, key: &Path) -> Result<ServedCert> {
        let stamp = stamp(cert, key)?;
        let (certified, info) = certified(cert, key)?;
        let current = RwLock::new(Served { key: certified, info, stamp, rejected: None });
        Ok(ServedCert { cert: cert.to_path_buf(), key: key.to_path_buf(), current })
    }

    /// What the certificate presented now says.
    pub fn info(&self) -> CertInfo {
        match self.current.read() {
            Ok(s) => s.info.clone(),
            Err(poisoned) => poisoned.into_inner().info.clone(),
        }
    }

    /// Load the pair again when its files changed: `Some` with the new certificate, `None`
    /// when nothing changed; an error (the old pair is kept) when the new one does not
    /// load, e.g. a key without its certificate yet; that is retried once either changes.
    pub fn reload(&self) -> Result<Option<CertInfo>> {
        let now = stamp(&self.cert, &self.key)?;
        {
            let served = self.current.read().map_err(|_| usage("the served certificate's lock is poisoned"))?;
            if served.stamp == now || served.rejected == Some(now) {
                return Ok(None);
            }
        }
        let loaded = certified(&self.cert, &self.key);
        let mut served = self.current.write().map_err(|_| usage("the served certificate's lock is poisoned"))?;
        match loaded {
            Ok((key, info)) => {
                *served = Served { key, info: info.clone(), stamp: now, rejected: None };
                Ok(Some(info))
            }
            Err(e) => {
                served.rejected = Some(now);
                Err(e)
            }
        }
    }
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|s| Arc::clone(&s.key))
    }
}

fn stamp(cert: &Path, key: &Path) -> Result<Stamp> {
    let one = |path: &Path| -> Result<(u64, i64, i64, u64)> {
        let m = fs::metadata(path).at(path)?;
        Ok((m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
    };
    Ok([one(cert)?, one(key)?])
}

/// The pair at `cert` and `key`, checked to belong together, ready for rustls.
fn certified(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, CertInfo)> {
    let (cert_pem, key_pem) = install::read_pair(cert, key)?;
    let chain = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| usage(format!("{}: not a PEM certificate chain: {e}", cert.display())))?;
    let der = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| usage(format!("{}: not a PEM private key: {e}", key.display())))?
        .ok_or_else(|| usage(format!("{}: no private key in it", key.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| usage(format!("{}: unsupported private key: {e}", key.display())))?;
    let info = CertInfo::from_pem(&cert_pem, cert)?;
    Ok((Arc::new(CertifiedKey::new(chain, signing)), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_name_constraint_subnets() {
        let lo8 = [127, 0, 0, 0, 255, 0, 0, 0];
        assert!(in_subnet(&"127.0.0.2".parse().unwrap(), &lo8));
        assert!(!in_subnet(&"128.0.0.1".parse().unwrap(), &lo8));
        assert!(!in_subnet(&"::1".parse().unwrap(), &lo8));
        let one = [10, 1, 2, 3, 255, 255, 255, 255];
        assert!(in_subnet(&"10.1.2.3".parse().unwrap(), &one));
        assert!(!in_subnet(&"10.1.2.4".parse().unwrap(), &one));
    }

    #[test]
    fn days_left_round_down_and_warn_within_thirty_days() {
        let info = |not_after| CertInfo {
            path: "tls/server.crt".into(),
            subject: String::new(),
            serial: String::new(),
            not_before: 0,
            not_after,
            names: Names::default(),
        };
        let now = 1_000 * DAY as u64;
        assert_eq!(info(1_000 * DAY + 10 * DAY + 5).days_left(now), 10);
        assert!(info(1_000 * DAY + 10 * DAY).expiry_warning(now).unwrap().contains("expires in 10 days"));
        assert!(info(1_000 * DAY + 31 * DAY).expiry_warning(now).is_none());
        assert!(info(999 * DAY).expiry_warning(now).unwrap().contains("expired on"));
        assert_eq!(info(999 * DAY).days_left(now), -1);
    }
}
