//! Basic authentication against an htpasswd file of bcrypt entries (`user:$2y$…`).
//!
//! bcrypt costs tens of milliseconds per check, and clients send credentials on every
//! request, so successful checks are remembered (user + sha256 of the password) in memory.
//! An unknown user is checked against a dummy hash of the same cost, so a failed login
//! takes as long whether the user exists or not (no user-enumeration oracle).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use crate::digest::Digest;
use crate::error::{usage, IoContext, Result};

/// Entries kept at most in the cache of verified credentials.
const CACHE_LIMIT: usize = 1024;

pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<(String, Digest)>>,
    /// A bcrypt hash of a random password at the highest cost of the file.
    dummy: String,
}

/// What the credentials of a request are worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No `Authorization: Basic` header (or not a readable one).
    Anonymous,
    /// A user whose password matched.
    User(String),
    /// Credentials that did not match (the user may not exist).
    Failed { user: String, unknown: bool },
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd> {
        let text = std::fs::read_to_string(path).at(path)?;
        Htpasswd::parse(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> std::result::Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or_else(|| format!("line {}: expected user:hash", n + 1))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(format!("line {}: user {user}: only bcrypt ($2y$, $2b$) entries are supported", n + 1));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err("no users".into());
        }
        let cost =
            users.values().filter_map(|h| h.get(4..6)?.parse::<u32>().ok()).max().unwrap_or(bcrypt::DEFAULT_COST);
        let mut random = [0u8; 18];
        getrandom::getrandom(&mut random).map_err(|e| format!("no randomness for the dummy hash: {e}"))?;
        let dummy = bcrypt::hash(Digest::of(&random).hex(), cost).map_err(|e| format!("bcrypt cost {cost}: {e}"))?;
        Ok(Htpasswd { users, verified: Mutex::new(HashSet::new()), dummy })
    }

    /// What an `Authorization` header value is worth. Blocks for a bcrypt check unless
    /// the credentials were verified before; an unknown user costs the same check.
    pub fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return Verdict::Anonymous };
        let (hash, unknown) = match self.users.get(&user) {
            Some(h) => (h, false),
            None => (&self.dummy, true),
        };
        let key = (user, Digest::of(password.as_bytes()));
        if !unknown && self.verified.lock().map(|v| v.contains(&key)).unwrap_or(false) {
            return Verdict::User(key.0);
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
        Verdict::User(key.0)
    }

    /// The verdict when it needs no bcrypt (so it can be given on the async thread):
    /// no credentials, or credentials verified before.
    pub fn cached(&self, authorization: Option<&str>) -> Option<Verdict> {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return Some(Verdict::Anonymous) };
        if !self.users.contains_key(&user) {
            return None;
        }
        let key = (user, Digest::of(password.as_bytes()));
        self.verified.lock().ok().and_then(|v| v.contains(&key).then_some(Verdict::User(key.0)))
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
        let alice = Verdict::User("alice".into());
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
    fn refuses_other_hashes() {
        assert!(Htpasswd::parse("u:$apr1$xyz").is_err());
        assert!(Htpasswd::parse("u:plain").is_err());
        assert!(Htpasswd::parse("").is_err());
    }
}
