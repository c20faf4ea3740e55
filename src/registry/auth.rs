//! Basic authentication against the root's users (`users.rs`: htpasswd of bcrypt entries,
//! roles beside it), and what a user's role lets it do.
//!
//! bcrypt costs tens of milliseconds per check, and clients send credentials on every
//! request, so successful checks are remembered (user + sha256 of the password) in memory.
//! An unknown user is checked against a dummy hash of the same cost, so a failed login
//! takes as long whether the user exists or not (no user-enumeration oracle).
//!
//! A running server picks up `airlift user` edits without a restart: [`Credentials`] looks
//! at the files (device, inode, size, mtime, ctime) at most every [`RELOAD_EVERY`], on the
//! first request after that, and loads them again when they changed. The edits replace
//! each file by rename, so a load reads a whole old file or a whole new one; a new table
//! starts with an empty cache, so a changed password or a removed user is refused at once.
//! A table that fails to load (a hand edit gone wrong) is logged and the last good one kept.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::Method;
use base64::Engine as _;

use super::log::Log;
use super::users::{self, Files, Line, Role, Roles};
use crate::digest::Digest;
use crate::error::{usage, IoContext, Result};

/// Entries kept at most in the cache of verified credentials.
const CACHE_LIMIT: usize = 1024;
/// How often, at most, the user files are looked at for changes.
pub const RELOAD_EVERY: Duration = Duration::from_millis(250);

/// One loaded table of users: their hashes and roles.
pub struct Htpasswd {
    users: HashMap<String, (String, Role)>,
    verified: Mutex<HashSet<(String, Digest)>>,
    /// A bcrypt hash of a random password at the highest cost of the file.
    dummy: String,
}

/// What the credentials of a request are worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No `Authorization: Basic` header (or not a readable one).
    Anonymous,
    /// A user whose password matched, and its role.
    User { name: String, role: Role },
    /// Credentials that did not match (the user may not exist).
    Failed { user: String, unknown: bool },
}

/// Whether `role` may make a request with `method`: a read-only user may only read (GET
/// and HEAD of manifests, blobs, tags, the catalog, referrers); every write (POST, PUT,
/// PATCH, DELETE) is a read-write user's.
pub fn allows(role: Role, method: &Method) -> bool {
    role == Role::ReadWrite || method == Method::GET || method == Method::HEAD
}

impl Htpasswd {
    /// An htpasswd file's text, every user read-write.
    pub fn parse(text: &str) -> std::result::Result<Htpasswd, String> {
        Htpasswd::build(users::parse_htpasswd(text)?, &Roles::default(), None)
    }

    /// The table of `lines` with `roles`; the dummy hash of `previous` is kept when its cost
    /// is still the highest of the file.
    fn build(lines: Vec<Line>, roles: &Roles, previous: Option<&Htpasswd>) -> std::result::Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for line in lines {
            if let Line::Entry { user, hash } = line {
                let role = roles.role(&user);
                users.insert(user, (hash, role));
            }
        }
        if users.is_empty() {
            return Err("no users".into());
        }
        let cost =
            users.values().filter_map(|(h, _)| h.get(4..6)?.parse::<u32>().ok()).max().unwrap_or(bcrypt::DEFAULT_COST);
        let dummy = match previous.filter(|p| cost_of(&p.dummy) == Some(cost)) {
            Some(p) => p.dummy.clone(),
            None => {
                let mut random = [0u8; 18];
                getrandom::getrandom(&mut random).map_err(|e| format!("no randomness for the dummy hash: {e}"))?;
                bcrypt::hash(Digest::of(&random).hex(), cost).map_err(|e| format!("bcrypt cost {cost}: {e}"))?
            }
        };
        Ok(Htpasswd { users, verified: Mutex::new(HashSet::new()), dummy })
    }

    /// What an `Authorization` header value is worth. Blocks for a bcrypt check unless
    /// the credentials were verified before; an unknown user costs the same check.
    pub fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return Verdict::Anonymous };
        let (hash, role, unknown) = match self.users.get(&user) {
            Some((h, role)) => (h, *role, false),
            None => (&self.dummy, Role::ReadOnly, true),
        };
        let key = (user, Digest::of(password.as_bytes()));
        if !unknown && self.verified.lock().map(|v| v.contains(&key)).unwrap_or(false) {
            return Verdict::User { name: key.0, role };
        }
        if !bcrypt::verify(&password, hash).unwrap_or(false) || unknown {
            return Verdict::Failed { user: key.0, unknown };
        }
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= CACHE_LIMIT {
                v.clear();
            }
            v.insert(key.clone());
        }
        Verdict::User { name: key.0, role }
    }

    /// The verdict when it needs no bcrypt (so it can be given on the async thread):
    /// no credentials, or credentials verified before.
    pub fn cached(&self, authorization: Option<&str>) -> Option<Verdict> {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return Some(Verdict::Anonymous) };
        let role = self.users.get(&user)?.1;
        let key = (user, Digest::of(password.as_bytes()));
        self.verified.lock().ok().and_then(|v| v.contains(&key).then_some(Verdict::User { name: key.0, role }))
    }
}

/// The cost of a bcrypt hash (`$2b$10$…` → 10).
fn cost_of(hash: &str) -> Option<u32> {
    hash.get(4..6)?.parse().ok()
}

/// The stamps of htpasswd and roles.json (None: absent).
type Stamps = (Option<Stamp>, Option<Stamp>);

/// What a user file looked like when it was loaded: changed when any of these differ
/// (a rename gives a new inode; an edit in place a new size, mtime or ctime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// The stamp of `path` now; None when it does not exist.
    fn now(path: &Path) -> Result<Option<Stamp>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Stamp::of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(path),
        }
    }
}

/// A file's bytes and the stamp of exactly what was read (taken from the open file, so
/// an edit between looking and reading is seen at the next look). None when absent.
fn read_stamped(path: &Path) -> Result<Option<(Vec<u8>, Stamp)>> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    let stamp = Stamp::of(&file.metadata().at(path)?);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).at(path)?;
    Ok(Some((bytes, stamp)))
}

/// The users a server checks requests against, reloaded when their files change.
pub struct Credentials {
    /// None: a fixed table (router tests).
    files: Option<Files>,
    current: RwLock<Arc<Htpasswd>>,
    /// The stamps of htpasswd and roles.json as last loaded (or last failed to load).
    stamps: Mutex<Stamps>,
    epoch: Instant,
    /// When the files were last looked at, in milliseconds since `epoch`.
    looked: AtomicU64,
}

impl Credentials {
    /// The users of `htpasswd` and the roles beside it.
    pub fn open(htpasswd: &Path) -> Result<Credentials> {
        let files = Files::beside(htpasswd);
        let (table, stamps) = load(&files, None)?;
        Ok(Credentials {
            files: Some(files),
            current: RwLock::new(Arc::new(table)),
            stamps: Mutex::new(stamps),
            epoch: Instant::now(),
            looked: AtomicU64::new(0),
        })
    }

    /// A table that never changes.
    pub fn fixed(table: Htpasswd) -> Credentials {
        Credentials {
            files: None,
            current: RwLock::new(Arc::new(table)),
            stamps: Mutex::new((None, None)),
            epoch: Instant::now(),
            looked: AtomicU64::new(0),
        }
    }

    /// The table requests are checked against now.
    pub fn current(&self) -> Arc<Htpasswd> {
        match self.current.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Whether a look at the files is due; true claims it (one caller per period).
    fn due(&self) -> bool {
        if self.files.is_none() {
            return false;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.looked.load(Ordering::Relaxed);
        now.saturating_sub(last) >= RELOAD_EVERY.as_millis() as u64
            && self.looked.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Look at the files and load them again when they changed: the number of users of
    /// the new table, or None when nothing changed. On an error the table in use stays,
    /// and the files are not loaded again until they change again.
    pub fn refresh(&self) -> Result<Option<usize>> {
        let Some(files) = &self.files else { return Ok(None) };
        let Ok(mut stamps) = self.stamps.lock() else { return Ok(None) };
        let seen = (Stamp::now(&files.htpasswd)?, Stamp::now(&files.roles)?);
        if seen == *stamps {
            return Ok(None);
        }
        let previous = self.current();
        match load(files, Some(&previous)) {
            Ok((table, loaded)) => {
                let n = table.users.len();
                *stamps = loaded;
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(table);
                }
                Ok(Some(n))
            }
            Err(e) => {
                *stamps = seen;
                Err(e)
            }
        }
    }
}

/// Load the table of `files`, with the stamps of what was read.
fn load(files: &Files, previous: Option<&Htpasswd>) -> Result<(Htpasswd, Stamps)> {
    let path = &files.htpasswd;
    let (bytes, htpasswd_stamp) =
        read_stamped(path)?.ok_or_else(|| usage(format!("{}: missing (the registry root's users)", path.display())))?;
    let (roles, roles_stamp) = match read_stamped(&files.roles)? {
        Some((bytes, stamp)) => {
            let roles = Roles::parse(&bytes).map_err(|e| usage(format!("{}: {e}", files.roles.display())))?;
            (roles, Some(stamp))
        }
        None => (Roles::default(), None),
    };
    let text = String::from_utf8(bytes).map_err(|_| usage(format!("{}: not UTF-8 text", path.display())))?;
    let lines = users::parse_htpasswd(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let table = Htpasswd::build(lines, &roles, previous).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok((table, (Some(htpasswd_stamp), roles_stamp)))
}

/// Load the user files again when they changed since the last look (at most every
/// [`RELOAD_EVERY`], off the async threads), logging what happened.
pub async fn reload_if_changed(credentials: &Arc<Credentials>, log: &Log) {
    if !credentials.due() {
        return;
    }
    let c = Arc::clone(credentials);
    let warn = |e: String| log.event("warning", serde_json::json!({ "message": e }));
    match tokio::task::spawn_blocking(move || c.refresh()).await {
        Ok(Ok(Some(users))) => log.event("users_reloaded", serde_json::json!({ "users": users })),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => warn(format!("the users were not reloaded, the last good ones stay: {e}")),
        Err(e) => warn(format!("reloading the users: {e}")),
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Checks an `Authorization` header, off the async threads when bcrypt must run.
pub async fn verdict(htpasswd: &Arc<Htpasswd>, authorization: Option<String>) -> Verdict {
    if let Some(answer) = htpasswd.cached(authorization.as_deref()) {
        return answer;
    }
    let h = Arc::clone(htpasswd);
    tokio::task::spawn_blocking(move || h.check(authorization.as_deref())).await.unwrap_or(Verdict::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn checks_bcrypt_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap().replacen("$2b$", "$2y$", 1);
        let h = Htpasswd::parse(&format!("# comment\nalice:{hash}\n")).unwrap();
        let alice = Verdict::User { name: "alice".into(), role: Role::ReadWrite };
        assert_eq!(h.cached(Some(&header("alice", "s3cret"))), None);
        assert_eq!(h.check(Some(&header("alice", "s3cret"))), alice);
        assert_eq!(h.cached(Some(&header("alice", "s3cret"))), Some(alice.clone()));
        assert_eq!(h.check(Some(&header("alice", "s3cret"))), alice);
        assert_eq!(h.check(Some(&header("alice", "wrong"))), Verdict::Failed { user: "alice".into(), unknown: false });
        // An unknown user is not answered from the cache: it costs a bcrypt check too.
        assert_eq!(h.cached(Some(&header("bob", "s3cret"))), None);
        assert_eq!(h.check(Some(&header("bob", "s3cret"))), Verdict::Failed { user: "bob".into(), unknown: true });
        assert_eq!(h.check(None), Verdict::Anonymous);
        assert_eq!(h.check(Some("Bearer abc")), Verdict::Anonymous);
        assert_eq!(h.check(Some("Basic !!!")), Verdict::Anonymous);
        assert!(h.dummy.starts_with("$2b$04$"), "the dummy hash has the users' cost: {}", h.dummy);
    }

    #[test]
    fn roles_decide_writes() {
        for m in [Method::GET, Method::HEAD] {
            assert!(allows(Role::ReadOnly, &m));
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!allows(Role::ReadOnly, &m), "{m}");
            assert!(allows(Role::ReadWrite, &m), "{m}");
        }
    }

    /// An edit of the files is taken by the next refresh: a new user logs in with its role,
    /// a removed one and an old password are refused (the cache does not outlive a table);
    /// a broken file keeps the last good table.
    #[test]
    fn refresh_follows_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let hash = |p: &str| bcrypt::hash(p, 4).unwrap();
        std::fs::write(&htpasswd, format!("init:{}\n", hash("pw-init"))).unwrap();
        let c = Credentials::open(&htpasswd).unwrap();
        let check = |user: &str, pw: &str| c.current().check(Some(&header(user, pw)));
        assert_eq!(check("init", "pw-init"), Verdict::User { name: "init".into(), role: Role::ReadWrite });
        assert_eq!(c.refresh().unwrap(), None, "nothing changed");

        let roles = dir.path().join(users::ROLES_FILE);
        std::fs::write(&roles, r#"{"version":1,"users":{"ci":"read-only","init":"read-write"}}"#).unwrap();
        std::fs::write(&htpasswd, format!("init:{}\nci:{}\n", hash("pw-init2"), hash("pw-ci"))).unwrap();
        assert_eq!(c.refresh().unwrap(), Some(2));
        assert_eq!(check("ci", "pw-ci"), Verdict::User { name: "ci".into(), role: Role::ReadOnly });
        assert!(matches!(check("init", "pw-init"), Verdict::Failed { unknown: false, .. }), "old password");

        std::fs::write(&htpasswd, "init:plain\n").unwrap();
        assert!(c.refresh().unwrap_err().to_string().contains("htpasswd"));
        assert_eq!(c.refresh().unwrap(), None, "a broken file is not read again until it changes");
        assert_eq!(check("ci", "pw-ci"), Verdict::User { name: "ci".into(), role: Role::ReadOnly });

        std::fs::write(&htpasswd, format!("init:{}\n", hash("pw-init2"))).unwrap();
        assert_eq!(c.refresh().unwrap(), Some(1));
        assert!(matches!(check("ci", "pw-ci"), Verdict::Failed { unknown: true, .. }), "removed user");
    }

    #[test]
    fn refuses_other_hashes() {
        assert!(Htpasswd::parse("u:$apr1$xyz").is_err());
        assert!(Htpasswd::parse("u:plain").is_err());
        assert!(Htpasswd::parse("").is_err());
    }
}
