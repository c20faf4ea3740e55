//! Registry credentials and authentication challenges.
//!
//! Credentials come from a containers `auth.json`, a Docker `config.json` or an OpenShift
//! pull secret, all the same shape: `{"auths": {"HOST[:PORT][/PATH]": {"auth":
//! "base64(user:password)"}}}`. The file is `--authfile`, else the first of
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json`
//! that has an entry for the registry.
//!
//! A registry asks for authentication with `WWW-Authenticate`: `Basic realm=…` (send the
//! credentials) or `Bearer realm=…,service=…,scope=…` (get a token from the realm, with
//! the credentials if there are any, and send it).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{usage, IoContext, Result};
use crate::oci::layout::read_limited;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// The entries of one credentials file, keyed by normalised `HOST[:PORT][/PATH]`.
#[derive(Debug, Clone, Default)]
pub struct AuthFile {
    pub path: PathBuf,
    entries: BTreeMap<String, Credentials>,
}

const MAX_AUTH_FILE: u64 = 4 << 20;

impl AuthFile {
    pub fn load(path: &Path) -> Result<AuthFile> {
        let bytes = read_limited(path, MAX_AUTH_FILE)?;
        Self::parse(path, &bytes)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<AuthFile> {
        let bad = |what: String| usage(format!("credentials file {}: {what}", path.display()));
        let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let mut entries = BTreeMap::new();
        if let Some(auths) = doc.get("auths") {
            let auths = auths.as_object().ok_or_else(|| bad("\"auths\" is not an object".into()))?;
            for (key, entry) in auths {
                if let Some(creds) = entry_credentials(entry).map_err(|e| bad(format!("entry \"{key}\": {e}")))? {
                    entries.insert(normalise_key(key), creds);
                }
            }
        }
        Ok(AuthFile { path: path.to_path_buf(), entries })
    }

    /// The credentials for a repository of a registry: the most specific entry whose key
    /// is the registry or a path prefix of `registry/repository`.
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<&Credentials> {
        let full = format!("{registry}/{repository}");
        let mut candidate = full.as_str();
        loop {
            if let Some(c) = self.entries.get(candidate) {
                return Some(c);
            }
            candidate = &candidate[..candidate.rfind('/')?];
        }
    }
}

/// `{"auth": base64(user:pass)}` or `{"username":…, "password":…}`; entries with neither
/// (a credential helper's placeholder) carry no credentials.
fn entry_credentials(entry: &serde_json::Value) -> std::result::Result<Option<Credentials>, String> {
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("\"auth\" is not base64: {e}"))?;
        let text = String::from_utf8(decoded).map_err(|_| "\"auth\" is not UTF-8".to_string())?;
        let (user, pass) = text.split_once(':').ok_or("\"auth\" is not base64 of user:password")?;
        return Ok(Some(Credentials { username: user.into(), password: pass.into() }));
    }
    let user = entry.get("username").and_then(|u| u.as_str());
    let pass = entry.get("password").and_then(|p| p.as_str());
    Ok(match (user, pass) {
        (Some(u), Some(p)) => Some(Credentials { username: u.into(), password: p.into() }),
        _ => None,
    })
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/` → `host:5000`;
/// `quay.io/ns` stays.
fn normalise_key(key: &str) -> String {
    let k = key.trim();
    let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    let k = k.trim_end_matches('/');
    let k = k.strip_suffix("/v1").or_else(|| k.strip_suffix("/v2")).unwrap_or(k);
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (k, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    match path {
        Some(p) => format!("{host}/{p}"),
        None => host.to_string(),
    }
}

/// Where credentials are looked up, in order.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    files: Vec<AuthFile>,
}

impl Keyring {
    /// `--authfile` when given (it must be readable), else the default places that exist.
    pub fn load(authfile: Option<&Path>) -> Result<Keyring> {
        if let Some(p) = authfile {
            return Ok(Keyring { files: vec![AuthFile::load(p)?] });
        }
        let mut files = Vec::new();
        for p in default_paths() {
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => files.push(AuthFile::load(&p)?),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&p),
            }
        }
        Ok(Keyring { files })
    }

    pub fn from_files(files: Vec<AuthFile>) -> Keyring {
        Keyring { files }
    }

    /// Credentials for `registry/repository`, and the file they came from.
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<(&Credentials, &Path)> {
        self.files.iter().find_map(|f| f.lookup(registry, repository).map(|c| (c, f.path.as_path())))
    }
}

fn default_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(d).join("containers").join("auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(h).join(".docker").join("config.json"));
    }
    out
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    /// Parse a header value. Unknown schemes give `None`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = match header.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((s, r)) => (s, r),
            None => (header, ""),
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = auth_params(rest);
        let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
    }
}

/// `name=value` or `name="quoted, \"value\""` pairs separated by commas.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() && chars.peek().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim_end().to_string();
            }
        }
        let name = name.trim().to_string();
        if !name.is_empty() {
            out.push((name, value));
        }
    }
}

/// What a token endpoint answers: `token` (Docker) or `access_token` (OAuth2), and how
/// long it lives.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn value(&self) -> Option<&str> {
        self.token.as_deref().or(self.access_token.as_deref()).filter(|t| !t.is_empty())
    }

    /// Seconds the token may be used: what the issuer says (at least 60, the spec's
    /// default), less a margin so a token is not used at its last second.
    pub fn lifetime(&self) -> u64 {
        self.expires_in.unwrap_or(60).max(60) - 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_auth_files_of_every_flavour() {
        let doc = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:pw1")},
                "quay.io": {"auth": b64("q:pw:with:colons"), "email": "x@y"},
                "quay.io/ns/private": {"auth": b64("scoped:pw")},
                "http://localhost:5000": {"username": "u", "password": "p"},
                "helper.example.com": {},
            },
            "credHelpers": {"gcr.io": "gcloud"},
        });
        let f = AuthFile::parse(Path::new("a.json"), doc.to_string().as_bytes()).unwrap();
        assert_eq!(f.lookup("docker.io", "library/nginx").unwrap().username, "hub");
        let q = f.lookup("quay.io", "ns/app").unwrap();
        assert_eq!((q.username.as_str(), q.password.as_str()), ("q", "pw:with:colons"));
        assert_eq!(f.lookup("quay.io", "ns/private/app").unwrap().username, "scoped");
        assert_eq!(f.lookup("quay.io", "ns/privateer").unwrap().username, "q");
        assert_eq!(f.lookup("localhost:5000", "a").unwrap().password, "p");
        assert!(f.lookup("localhost:5001", "a").is_none());
        assert!(f.lookup("helper.example.com", "a").is_none());
        assert!(!format!("{q:?}").contains("pw"));
    }

    #[test]
    fn rejects_malformed_auth_files() {
        for bad in [
            "not json",
            r#"{"auths": []}"#,
            r#"{"auths": {"q.io": {"auth": "!!!"}}}"#,
            &format!(r#"{{"auths": {{"q.io": {{"auth": "{}"}}}}}}"#, b64("nocolon")),
        ] {
            assert!(AuthFile::parse(Path::new("a.json"), bad.as_bytes()).is_err(), "{bad}");
        }
        // A file without "auths" is fine (a Docker config with only helpers).
        assert!(AuthFile::parse(Path::new("a"), b"{}").unwrap().lookup("q.io", "a").is_none());
    }

    #[test]
    fn keyring_prefers_the_first_file_that_knows_the_registry() {
        let a = AuthFile::parse(Path::new("a"), br#"{"auths":{"a.io":{"username":"1","password":"x"}}}"#).unwrap();
        let b = AuthFile::parse(
            Path::new("b"),
            br#"{"auths":{"a.io":{"username":"2","password":"x"},"b.io":{"username":"3","password":"x"}}}"#,
        )
        .unwrap();
        let k = Keyring::from_files(vec![a, b]);
        assert_eq!(k.lookup("a.io", "r").unwrap().0.username, "1");
        let (c, p) = k.lookup("b.io", "r").unwrap();
        assert_eq!((c.username.as_str(), p), ("3", Path::new("b")));
    }

    #[test]
    fn parses_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"bearer realm="https://h/t?x=1,2", scope="a:b:pull,push", error="invalid_token""#),
            Some(Challenge::Bearer {
                realm: "https://h/t?x=1,2".into(),
                service: None,
                scope: Some("a:b:pull,push".into())
            })
        );
        assert_eq!(
            Challenge::parse(r#"Bearer realm=https://h/token, service=reg"#),
            Some(Challenge::Bearer { realm: "https://h/token".into(), service: Some("reg".into()), scope: None })
        );
        assert_eq!(
            Challenge::parse(r#"Bearer realm="a\"b""#),
            Some(Challenge::Bearer { realm: "a\"b".into(), service: None, scope: None })
        );
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }

    #[test]
    fn token_responses() {
        let t: TokenResponse = serde_json::from_str(r#"{"token":"a","expires_in":300}"#).unwrap();
        assert_eq!((t.value(), t.lifetime()), (Some("a"), 290));
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"b"}"#).unwrap();
        assert_eq!((t.value(), t.lifetime()), (Some("b"), 50));
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.value(), None);
    }
}
