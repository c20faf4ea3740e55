//! Basic authentication against an htpasswd file of bcrypt entries (`user:$2y$…`).
//!
//! bcrypt costs tens of milliseconds per check, and clients send credentials on every
//! request, so successful checks are remembered (user + sha256 of the password) in memory.

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
        Ok(Htpasswd { users, verified: Mutex::new(HashSet::new()) })
    }

    /// Whether an `Authorization` header value carries valid credentials. Blocks for a
    /// bcrypt check unless the credentials were verified before.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return false };
        let Some(hash) = self.users.get(&user) else { return false };
        let key = (user, Digest::of(password.as_bytes()));
        if self.verified.lock().map(|v| v.contains(&key)).unwrap_or(false) {
            return true;
        }
        if !bcrypt::verify(&password, hash).unwrap_or(false) {
            return false;
        }
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= CACHE_LIMIT {
                v.clear();
            }
            v.insert(key);
        }
        true
    }

    /// Whether the check would answer without bcrypt (so it can run on the async thread).
    pub fn cached(&self, authorization: Option<&str>) -> Option<bool> {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return Some(false) };
        if !self.users.contains_key(&user) {
            return Some(false);
        }
        let key = (user, Digest::of(password.as_bytes()));
        self.verified.lock().ok().and_then(|v| v.contains(&key).then_some(true))
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
pub async fn authorized(htpasswd: &Arc<Htpasswd>, authorization: Option<String>) -> bool {
    if let Some(answer) = htpasswd.cached(authorization.as_deref()) {
        return answer;
    }
    let h = Arc::clone(htpasswd);
    tokio::task::spawn_blocking(move || h.check(authorization.as_deref())).await.unwrap_or(false)
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
        assert_eq!(h.cached(Some(&header("alice", "s3cret"))), None);
        assert!(h.check(Some(&header("alice", "s3cret"))));
        assert_eq!(h.cached(Some(&header("alice", "s3cret"))), Some(true));
        assert!(h.check(Some(&header("alice", "s3cret"))));
        assert!(!h.check(Some(&header("alice", "wrong"))));
        assert!(!h.check(Some(&header("bob", "s3cret"))));
        assert!(!h.check(None));
        assert!(!h.check(Some("Bearer abc")));
        assert!(!h.check(Some("Basic !!!")));
    }

    #[test]
    fn refuses_other_hashes() {
        assert!(Htpasswd::parse("u:$apr1$xyz").is_err());
        assert!(Htpasswd::parse("u:plain").is_err());
        assert!(Htpasswd::parse("").is_err());
    }
}
