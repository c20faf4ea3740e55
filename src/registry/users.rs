//! A registry root's users: who may log in (htpasswd, bcrypt entries as `htpasswd -B`
//! writes them) and what they may do (their role, in `roles.json` beside htpasswd).
//!
//! ```text
//! ROOT/htpasswd      init:$2y$10$…          one line a user (install writes the first)
//! ROOT/roles.json    {"version":1,"users":{"init":"read-write","ci":"read-only"}}
//! ```
//! A user roles.json does not name (or every user, when there is no roles.json: roots
//! installed before roles existed) is read-write, as install's user is. Every edit holds
//! the root's install lock (two `airlift user` runs, or one and `install
//! --reset-password`, never lose each other's edit) and commits each file temp + fsync +
//! rename, so a reader (a running `serve`) sees the old file or the new, never half of
//! one. The two files are written in the order that never grants more than asked, even
//! between the two renames: roles first when a user is added, htpasswd first when one is
//! removed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::Config;
use crate::error::{usage, IoContext, Result};
use crate::store::{self, Commit};

/// The roles file, in the directory of htpasswd.
pub const ROLES_FILE: &str = "roles.json";
const ROLES_VERSION: u32 = 1;
/// Passwords an operator chooses: at least this many characters (mirror-registry's rule)…
pub const PASSWORD_MIN: usize = 8;
/// …and at most bcrypt's 72 bytes (it ignores what follows, so a longer one is refused).
pub const PASSWORD_MAX: usize = 72;
/// Generated passwords: 32 characters of [A-Za-z0-9], about 190 bits.
const PASSWORD_LEN: usize = 32;
/// The password is random (or chosen under the rule above), so the cost only has to make
/// the hash slow to check offline; 10 keeps the server's (cached) checks cheap.
const BCRYPT_COST: u32 = 10;
/// A password file holds one line; anything much larger is not one.
const PASSWORD_FILE_MAX: u64 = 4096;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Pull and push (install's user, and the default).
    ReadWrite,
    /// Pull only: every write is answered 403 DENIED.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadWrite => "read-write",
            Role::ReadOnly => "read-only",
        }
    }
}

/// A user and its role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
}

/// The roles of roles.json; a name it does not hold is read-write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    version: u32,
    users: BTreeMap<String, Role>,
}

impl Roles {
    /// roles.json at `path`; none (every user read-write) when it does not exist.
    pub fn load(path: &Path) -> Result<Roles> {
        match std::fs::read(path) {
            Ok(bytes) => Roles::parse(&bytes).map_err(|e| usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Roles::default()),
            Err(e) => Err(e).at(path),
        }
    }

    pub fn parse(bytes: &[u8]) -> std::result::Result<Roles, String> {
        let roles: Roles = serde_json::from_slice(bytes).map_err(|e| format!("not a roles file: {e}"))?;
        if roles.version != ROLES_VERSION {
            return Err(format!("roles file version {} is not supported", roles.version));
        }
        Ok(roles)
    }

    pub fn role(&self, user: &str) -> Role {
        self.users.get(user).copied().unwrap_or(Role::ReadWrite)
    }
}

/// One line of htpasswd: an entry, or a comment or blank line (kept as it is by edits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Entry { user: String, hash: String },
    Other(String),
}

/// The lines of an htpasswd file; only bcrypt entries ($2y$, $2b$, $2a$) are accepted.
pub fn parse_htpasswd(text: &str) -> std::result::Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            lines.push(Line::Other(line.to_string()));
            continue;
        }
        let (user, hash) = trimmed.split_once(':').ok_or_else(|| format!("line {}: expected user:hash", n + 1))?;
        if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
            return Err(format!("line {}: user {user}: only bcrypt ($2y$, $2b$) entries are supported", n + 1));
        }
        lines.push(Line::Entry { user: user.to_string(), hash: hash.to_string() });
    }
    Ok(lines)
}

/// Where a root's user files are.
#[derive(Debug, Clone)]
pub struct Files {
    pub htpasswd: PathBuf,
    pub roles: PathBuf,
}

impl Files {
    /// The files beside an htpasswd file.
    pub fn beside(htpasswd: &Path) -> Files {
        Files { htpasswd: htpasswd.to_path_buf(), roles: htpasswd.with_file_name(ROLES_FILE) }
    }

    /// The user files of an installed root (its config names htpasswd).
    pub fn of_root(root: &Path) -> Result<Files> {
        let config = Config::load(root)?;
        Ok(Files::beside(&config.resolve(root, &config.htpasswd)))
    }
}

/// A root's users, as the files stand (read under the lock by edits).
struct Users {
    files: Files,
    lines: Vec<Line>,
    roles: Roles,
}

impl Users {
    fn read(files: Files) -> Result<Users> {
        let text = std::fs::read_to_string(&files.htpasswd).at(&files.htpasswd)?;
        let lines = parse_htpasswd(&text).map_err(|e| usage(format!("{}: {e}", files.htpasswd.display())))?;
        let roles = Roles::load(&files.roles)?;
        Ok(Users { files, lines, roles })
    }

    fn accounts(&self) -> Vec<Account> {
        let mut seen = std::collections::BTreeSet::new();
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Entry { user, .. } if seen.insert(user.as_str()) => {
                    Some(Account { name: user.clone(), role: self.roles.role(user) })
                }
                _ => None,
            })
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.lines.iter().any(|l| matches!(l, Line::Entry { user, .. } if user == name))
    }

    fn missing(&self, name: &str) -> crate::error::Error {
        usage(format!("{}: no user {name:?}", self.files.htpasswd.display()))
    }

    fn write_htpasswd(&self) -> Result<()> {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Entry { user, hash } => text.push_str(&format!("{user}:{hash}\n")),
                Line::Other(other) => text.push_str(&format!("{other}\n")),
            }
        }
        store::write_file(&self.files.htpasswd, text.as_bytes(), Commit::mode(0o600))
    }

    /// roles.json with the role of every user htpasswd holds (names it no longer holds
    /// are dropped).
    fn write_roles(&mut self) -> Result<()> {
        let users = self.accounts().into_iter().map(|a| (a.name, a.role)).collect();
        self.roles = Roles { version: ROLES_VERSION, users };
        let mut bytes = serde_json::to_vec_pretty(&self.roles).map_err(|e| usage(e.to_string()))?;
        bytes.push(b'\n');
        store::write_file(&self.files.roles, &bytes, Commit::mode(0o600))
    }
}

/// Run `edit` on the root's users under its install lock.
fn edit<T>(root: &Path, edit: impl FnOnce(&mut Users) -> Result<T>) -> Result<T> {
    let files = Files::of_root(root)?;
    let _lock = super::install::lock_root(root)?;
    let mut users = Users::read(files)?;
    edit(&mut users)
}

/// Every user of the root, in htpasswd's order, with its role.
pub fn list(root: &Path) -> Result<Vec<Account>> {
    Ok(Users::read(Files::of_root(root)?)?.accounts())
}

/// Add user `name` with `role` and `password` (checked with [`check_password`] by the
/// caller when the operator chose it). An existing user is refused: `passwd` changes a
/// password.
pub fn add(root: &Path, name: &str, role: Role, password: &str) -> Result<Account> {
    check_user(name)?;
    let entry = bcrypt_hash(password)?;
    edit(root, |users| {
        if users.has(name) {
            return Err(usage(format!(
                "{}: user {name:?} exists already (`airlift user passwd` changes its password)",
                users.files.htpasswd.display()
            )));
        }
        users.roles.users.insert(name.to_string(), role);
        users.lines.push(Line::Entry { user: name.to_string(), hash: entry });
        // The role first: the new user is never, even for a moment, more than asked.
        users.write_roles()?;
        users.write_htpasswd()?;
        Ok(Account { name: name.to_string(), role })
    })
}

/// Give user `name` a new password; its role and every other line stay.
pub fn set_password(root: &Path, name: &str, password: &str) -> Result<Account> {
    check_user(name)?;
    let hash = bcrypt_hash(password)?;
    edit(root, |users| {
        if !users.has(name) {
            return Err(users.missing(name));
        }
        for line in &mut users.lines {
            if let Line::Entry { user, hash: old } = line {
                if user == name {
                    old.clone_from(&hash);
                }
            }
        }
        users.write_htpasswd()?;
        Ok(Account { name: name.to_string(), role: users.roles.role(name) })
    })
}

/// Remove user `name`. The last user is never removed (a root without one cannot be
/// logged in to, and install would count it as broken); the last read-write user only
/// with `force` (then nobody can push until one is added).
pub fn remove(root: &Path, name: &str, force: bool) -> Result<Account> {
    check_user(name)?;
    edit(root, |users| {
        let accounts = users.accounts();
        let account = accounts.iter().find(|a| a.name == name).cloned().ok_or_else(|| users.missing(name))?;
        let path = users.files.htpasswd.display();
        if accounts.len() == 1 {
            return Err(usage(format!(
                "{path}: {name:?} is the only user; add another before removing it (`airlift user passwd` changes its password)"
            )));
        }
        let writers = accounts.iter().filter(|a| a.role == Role::ReadWrite).count();
        if account.role == Role::ReadWrite && writers == 1 && !force {
            return Err(usage(format!(
                "{path}: {name:?} is the last read-write user: nobody could push after it is gone; \
                 give --force to remove it anyway"
            )));
        }
        users.lines.retain(|l| !matches!(l, Line::Entry { user, .. } if user == name));
        // htpasswd first: the user cannot log in before its role is dropped.
        users.write_htpasswd()?;
        users.write_roles()?;
        Ok(account)
    })
}

/// A user name goes into htpasswd (`user:hash`), roles.json and basic auth
/// (`user:password`): 1-255 letters, digits, '.', '_', '-' or '@'.
pub fn check_user(user: &str) -> Result<()> {
    let ok = !user.is_empty()
        && user.len() <= 255
        && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        return Err(usage(format!(
            "invalid user name {}: use 1-255 letters, digits, '.', '_', '-' or '@'",
            crate::text::untrusted(&format!("{user:?}"))
        )));
    }
    Ok(())
}

/// The rule for a password an operator chooses: PASSWORD_MIN to PASSWORD_MAX bytes, no
/// control characters. `origin` says where it came from, for the error.
pub fn check_password(password: &str, origin: &str) -> Result<()> {
    let problem = if password.chars().count() < PASSWORD_MIN {
        format!("is shorter than {PASSWORD_MIN} characters")
    } else if password.len() > PASSWORD_MAX {
        format!("is longer than {PASSWORD_MAX} bytes (bcrypt ignores the rest)")
    } else if password.chars().any(char::is_control) {
        "holds a control character".to_string()
    } else {
        return Ok(());
    };
    Err(usage(format!("{origin}: the password {problem}")))
}

/// The password in `path`: its one line, without the final newline (`\n` or `\r\n`),
/// checked with [`check_password`]. A pipe works too (`--password-file <(…)`).
pub fn read_password_file(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    File::open(path).at(path)?.take(PASSWORD_FILE_MAX + 1).read_to_end(&mut bytes).at(path)?;
    let origin = path.display().to_string();
    if bytes.len() as u64 > PASSWORD_FILE_MAX {
        return Err(usage(format!(
            "{origin}: a password file is one line, this one is larger than {PASSWORD_FILE_MAX} bytes"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| usage(format!("{origin}: the password is not UTF-8 text")))?;
    let line = text.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&text);
    if line.contains('\n') {
        return Err(usage(format!("{origin}: a password file holds one line, this one holds more")));
    }
    check_password(line, &origin)?;
    Ok(line.to_string())
}

/// PASSWORD_LEN characters of [A-Za-z0-9], uniformly (bytes ≥ 248 are drawn again).
pub fn generate_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut password = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while password.len() < PASSWORD_LEN {
        getrandom::getrandom(&mut buf).map_err(|e| usage(format!("reading the operating system's randomness: {e}")))?;
        for &b in buf.iter().filter(|&&b| b < limit) {
            if password.len() < PASSWORD_LEN {
                password.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
            }
        }
    }
    Ok(password)
}

/// `$2y$10$…`, the hash `htpasswd -B` writes.
fn bcrypt_hash(password: &str) -> Result<String> {
    Ok(bcrypt::hash_with_result(password, BCRYPT_COST)
        .map_err(|e| usage(format!("hashing the password: {e}")))?
        .format_for_version(bcrypt::Version::TwoY))
}

/// A new htpasswd file holding `user` with `password` (install's first user).
pub fn create(htpasswd: &Path, user: &str, password: &str) -> Result<()> {
    check_user(user)?;
    let text = format!("{user}:{}\n", bcrypt_hash(password)?);
    store::write_file(htpasswd, text.as_bytes(), Commit::mode(0o600))
}

/// The first user of an htpasswd file (install's user).
pub fn first_user(path: &Path) -> Result<Option<String>> {
    let file = File::open(path).at(path)?;
    for line in BufReader::new(file).lines() {
        let line = line.at(path)?;
        if let Some((user, _)) = line.split_once(':') {
            if !user.trim().is_empty() && !user.starts_with('#') {
                return Ok(Some(user.trim().to_string()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root with a config and `init` (read-write, no roles.json yet), as install leaves it.
    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            version: 1,
            hostname: "localhost".into(),
            listen: "127.0.0.1:8443".into(),
            port: 8443,
            tls_cert: "tls/server.crt".into(),
            tls_key: "tls/server.key".into(),
            ca_cert: None,
            htpasswd: "htpasswd".into(),
            storage: "storage".into(),
        };
        config.save(dir.path()).unwrap();
        create(&dir.path().join("htpasswd"), "init", "initial-password").unwrap();
        dir
    }

    fn roles(dir: &Path) -> Vec<(String, Role)> {
        list(dir).unwrap().into_iter().map(|a| (a.name, a.role)).collect()
    }

    #[test]
    fn add_passwd_remove_keep_both_files_in_step() {
        let dir = root();
        let root = dir.path();
        assert_eq!(roles(root), [("init".to_string(), Role::ReadWrite)]);
        add(root, "ci", Role::ReadOnly, "ci-password").unwrap();
        add(root, "ops", Role::ReadWrite, "ops-password").unwrap();
        let want = [("init", Role::ReadWrite), ("ci", Role::ReadOnly), ("ops", Role::ReadWrite)];
        assert_eq!(roles(root), want.map(|(n, r)| (n.to_string(), r)));
        let on_disk = Roles::load(&root.join(ROLES_FILE)).unwrap();
        assert_eq!(on_disk.role("ci"), Role::ReadOnly);
        assert_eq!(on_disk.users.len(), 3, "every user is named: {on_disk:?}");
        let err = add(root, "ci", Role::ReadWrite, "another-password").unwrap_err().to_string();
        assert!(err.contains("exists already") && err.contains("htpasswd"), "{err}");

        let before = std::fs::read_to_string(root.join("htpasswd")).unwrap();
        assert_eq!(set_password(root, "ci", "new-ci-password").unwrap().role, Role::ReadOnly);
        let after = std::fs::read_to_string(root.join("htpasswd")).unwrap();
        let hash = |text: &str, user: &str| {
            text.lines().find_map(|l| l.strip_prefix(&format!("{user}:")).map(str::to_string)).unwrap()
        };
        assert_ne!(hash(&before, "ci"), hash(&after, "ci"));
        assert_eq!(hash(&before, "init"), hash(&after, "init"));
        assert!(bcrypt::verify("new-ci-password", &hash(&after, "ci")).unwrap());
        assert!(hash(&after, "ci").starts_with("$2y$10$"));
        assert!(set_password(root, "nobody", "whatever-password").unwrap_err().to_string().contains("nobody"));

        assert_eq!(remove(root, "ci", false).unwrap().role, Role::ReadOnly);
        assert!(!Roles::load(&root.join(ROLES_FILE)).unwrap().users.contains_key("ci"));
        assert!(remove(root, "ci", false).unwrap_err().to_string().contains("no user \"ci\""));
        use std::os::unix::fs::PermissionsExt;
        for f in ["htpasswd", ROLES_FILE] {
            assert_eq!(std::fs::metadata(root.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
    }

    #[test]
    fn the_last_user_and_the_last_writer_are_kept() {
        let dir = root();
        let root = dir.path();
        let err = remove(root, "init", true).unwrap_err().to_string();
        assert!(err.contains("only user"), "{err}");
        add(root, "reader", Role::ReadOnly, "reader-password").unwrap();
        let err = remove(root, "init", false).unwrap_err().to_string();
        assert!(err.contains("last read-write user") && err.contains("--force"), "{err}");
        assert_eq!(remove(root, "init", true).unwrap().name, "init");
        assert_eq!(roles(root), [("reader".to_string(), Role::ReadOnly)]);
    }

    #[test]
    fn names_and_passwords_are_checked() {
        for ok in ["init", "a.b-c_d@e", &"x".repeat(255)] {
            assert!(check_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a:b", "a b", "a\n", "#x", "é", &"x".repeat(256)] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("12345678", "f").is_ok());
        assert!(check_password("1234567", "f").unwrap_err().to_string().contains("shorter than 8"));
        assert!(check_password(&"a".repeat(73), "f").unwrap_err().to_string().contains("longer than 72"));
        assert!(check_password("abc\tdefgh", "f").unwrap_err().to_string().contains("control"));
        let (a, b) = (generate_password().unwrap(), generate_password().unwrap());
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn password_files_hold_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        for (text, want) in
            [("s3cret-pass\n", "s3cret-pass"), ("s3cret-pass", "s3cret-pass"), (" spaced pw \r\n", " spaced pw ")]
        {
            std::fs::write(&file, text).unwrap();
            assert_eq!(read_password_file(&file).unwrap(), want, "{text:?}");
        }
        for (text, why) in [("two\nlines-here\n", "one line"), ("short\n", "shorter"), ("\n", "shorter")] {
            std::fs::write(&file, text).unwrap();
            let err = read_password_file(&file).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("pw"), "{text:?}: {err}");
        }
        std::fs::write(&file, vec![b'a'; 5000]).unwrap();
        assert!(read_password_file(&file).unwrap_err().to_string().contains("larger than"));
        assert!(read_password_file(&dir.path().join("absent")).unwrap_err().to_string().contains("absent"));
    }

    #[test]
    fn edits_racing_from_threads_all_land() {
        let dir = root();
        let root = dir.path().to_path_buf();
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || add(&root, &format!("user{i}"), Role::ReadOnly, "racing-password").unwrap())
            })
            .collect();
        threads.into_iter().for_each(|t| drop(t.join().unwrap()));
        assert_eq!(list(&root).unwrap().len(), 7);
    }

    #[test]
    fn htpasswd_lines_are_parsed_and_bad_ones_named() {
        let lines = parse_htpasswd("# c\n\nu:$2y$10$abc\n").unwrap();
        assert_eq!(lines[2], Line::Entry { user: "u".into(), hash: "$2y$10$abc".into() });
        assert!(parse_htpasswd("u:$apr1$x").unwrap_err().contains("line 1"));
        assert!(parse_htpasswd("ok:$2y$1\nplain").unwrap_err().contains("line 2"));
        assert!(Roles::parse(br#"{"version":2,"users":{}}"#).unwrap_err().contains("version 2"));
        assert!(Roles::parse(br#"{"version":1,"users":{"a":"admin"}}"#).is_err());
    }
}
