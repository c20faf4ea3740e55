//! minisign-compatible keys and signatures.
//!
//! airlift signs in minisign's format so that stock `minisign -Vm` verifies a bundle without
//! airlift, and key pairs made by `minisign -G` work with airlift (and the other way round).
//!
//! ```text
//! public key  untrusted comment: minisign public key <KEY ID>
//!             base64( "Ed" | key id [8] | Ed25519 public key [32] )
//!
//! secret key  untrusted comment: <free text>
//!             base64( "Ed" | kdf ("Sc", or 0x00 0x00 when unencrypted) | "B2"
//!                     | kdf salt [32] | kdf opslimit u64le | kdf memlimit u64le
//!                     | key id [8] | Ed25519 seed [32] | Ed25519 public key [32] | checksum [32] )
//!             checksum = BLAKE2b-256("Ed" | key id | seed | public key). When encrypted, the
//!             last 104 bytes are XORed with libsodium's crypto_pwhash_scryptsalsa208sha256
//!             (scrypt, parameters derived from opslimit/memlimit). `minisign -G -W` leaves the
//!             checksum of an unencrypted key all zero; that is accepted.
//!
//! signature   untrusted comment: <free text>
//!             base64( "ED" | key id [8] | Ed25519(BLAKE2b-512(data)) [64] )
//!             trusted comment: <text>
//!             base64( Ed25519(signature [64] | trusted comment) [64] )
//!             The legacy algorithm "Ed" signs the data itself; it is accepted when verifying.
//! ```
//!
//! The key id is printed as minisign prints it: the 8 bytes read as a little-endian u64,
//! in upper-case hex.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

const SIG_ALG: [u8; 2] = *b"Ed";
const SIG_ALG_PREHASHED: [u8; 2] = *b"ED";
const KDF_SCRYPT: [u8; 2] = *b"Sc";
const KDF_NONE: [u8; 2] = [0, 0];
const CHK_BLAKE2B: [u8; 2] = *b"B2";

const KEY_ID_LEN: usize = 8;
const SALT_LEN: usize = 32;
const CHECKSUM_LEN: usize = 32;
/// "Ed" | key id | public key.
const PUBLIC_BOX_LEN: usize = 2 + KEY_ID_LEN + 32;
/// key id | seed | public key | checksum: the part that is encrypted.
const KEYNUM_SK_LEN: usize = KEY_ID_LEN + 64 + CHECKSUM_LEN;
/// sig_alg | kdf_alg | chk_alg | salt | opslimit | memlimit | keynum_sk.
const SECRET_BOX_LEN: usize = 2 + 2 + 2 + SALT_LEN + 8 + 8 + KEYNUM_SK_LEN;
/// sig_alg | key id | signature.
const SIGNATURE_BOX_LEN: usize = 2 + KEY_ID_LEN + 64;

const COMMENT_PREFIX: &str = "untrusted comment: ";
const TRUSTED_COMMENT_PREFIX: &str = "trusted comment: ";
/// minisign reads each comment line with `fgets` into 1024 bytes (8192 for the trusted
/// comment): prefix, text and line break must fit in one byte less than that.
const UNTRUSTED_COMMENT_MAX: usize = 1024 - 1 - COMMENT_PREFIX.len() - 1;
/// The longest trusted comment minisign signs and verifies.
pub const TRUSTED_COMMENT_MAX: usize = 8192 - 1 - TRUSTED_COMMENT_PREFIX.len() - 1;
/// minisign reads passwords into 1024 bytes with `fgets`.
const PASSWORD_MAX: usize = 1023;

/// What stock `minisign -G` uses: libsodium's scryptsalsa208sha256 "sensitive" limits
/// (scrypt N = 2^20, r = 8, p = 1: 1 GiB of memory).
pub const OPSLIMIT_SENSITIVE: u64 = 33_554_432;
pub const MEMLIMIT_SENSITIVE: u64 = 1_073_741_824;
/// Limits on what a secret key file may ask of scrypt, so that a hostile or damaged file
/// cannot exhaust memory or time: twice the memory and 16 times the work of stock minisign.
const KDF_MAX_MEMORY: u128 = 2 * MEMLIMIT_SENSITIVE as u128;
const KDF_MAX_WORK: u128 = 16 * (1 << 20) * 8;

/// Key and signature files are a few hundred bytes; anything much larger is not one.
const MAX_KEY_FILE: u64 = 64 * 1024;
const MAX_PASSWORD_FILE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A public or secret key that cannot be used (malformed, unsupported, corrupt).
    #[error("not a usable minisign {kind}: {reason}")]
    Key { kind: &'static str, reason: String },
    #[error("the secret key is encrypted and no password was given")]
    PasswordRequired,
    #[error("wrong password for the secret key (its checksum does not match after decryption)")]
    WrongPassword,
    /// The password could not be obtained (no terminal, bad password file).
    #[error("{0}")]
    Password(String),
    /// scrypt could not run with the parameters of a secret key file.
    #[error("{0}")]
    Kdf(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// The signature text is not a minisign signature.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    #[error("the signature was made by key {signature_key_id}, not by the trusted key {trusted_key_id}")]
    KeyIdMismatch { signature_key_id: String, trusted_key_id: String },
    #[error("signature verification failed: the signed data was altered or the signature is forged")]
    BadSignature,
    #[error("the trusted comment's signature does not verify: the trusted comment was altered")]
    BadTrustedComment,
    /// Another error, located in a file.
    #[error("{}: {inner}", path.display())]
    InFile { path: PathBuf, inner: Box<Error> },
}

impl Error {
    /// Whether the error says that signed content cannot be trusted (forged or altered
    /// signature, another signer, malformed signature file), as opposed to a problem with
    /// keys, passwords or I/O.
    pub fn is_integrity(&self) -> bool {
        match self {
            Error::MalformedSignature(_)
            | Error::KeyIdMismatch { .. }
            | Error::BadSignature
            | Error::BadTrustedComment => true,
            Error::InFile { inner, .. } => inner.is_integrity(),
            Error::Io { .. }
            | Error::Key { .. }
            | Error::PasswordRequired
            | Error::WrongPassword
            | Error::Password(_)
            | Error::Kdf(_)
            | Error::Random(_) => false,
        }
    }

    /// Name the file the error is about (I/O errors already do).
    pub fn at(self, path: &Path) -> Error {
        match self {
            Error::Io { .. } | Error::InFile { .. } => self,
            inner => Error::InFile { path: path.to_path_buf(), inner: Box::new(inner) },
        }
    }
}

fn key_error(kind: &'static str, reason: impl Into<String>) -> Error {
    Error::Key { kind, reason: reason.into() }
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::MalformedSignature(reason.into())
}

fn key_id_hex(id: [u8; KEY_ID_LEN]) -> String {
    format!("{:016X}", u64::from_le_bytes(id))
}

/// A public key: what a verifier trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key_id: [u8; KEY_ID_LEN],
    key: VerifyingKey,
}

impl PublicKey {
    pub fn from_file(path: &Path) -> Result<PublicKey, Error> {
        let text = read_key_text(path, "public key")?;
        PublicKey::parse(&text).map_err(|e| e.at(path))
    }

    /// Parse a public key file's text, or the bare base64 line (`minisign -P` form).
    pub fn parse(text: &str) -> Result<PublicKey, Error> {
        const KIND: &str = "public key";
        let text = text.trim();
        let line = if text.starts_with(COMMENT_PREFIX.trim_end()) {
            let mut lines = text.lines();
            lines.next();
            lines.next().ok_or_else(|| key_error(KIND, "the key line after the comment is missing"))?
        } else if !text.contains('\n') {
            text
        } else {
            return Err(key_error(
                KIND,
                format!(
                    "expected a line starting with \"{COMMENT_PREFIX}\" followed by the base64 key, \
                     or the bare base64 key"
                ),
            ));
        };
        let bytes = decode_base64(line).ok_or_else(|| key_error(KIND, "the key is not valid base64"))?;
        if bytes.len() == SECRET_BOX_LEN {
            return Err(key_error(KIND, "this is a secret key; give the public key (.pub) instead"));
        }
        if bytes.len() != PUBLIC_BOX_LEN {
            return Err(key_error(
                KIND,
                format!("the key is {} bytes long, a minisign public key is {PUBLIC_BOX_LEN}", bytes.len()),
            ));
        }
        if bytes[0..2] != SIG_ALG {
            return Err(key_error(KIND, "unsupported signature algorithm (expected \"Ed\")"));
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&bytes[2..2 + KEY_ID_LEN]);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&bytes[2 + KEY_ID_LEN..]);
        let key =
            VerifyingKey::from_bytes(&pk).map_err(|_| key_error(KIND, "the key is not a valid Ed25519 public key"))?;
        Ok(PublicKey { key_id, key })
    }

    pub fn key_id(&self) -> [u8; 8] {
        self.key_id
    }

    /// The key id as minisign prints it (upper-case hex).
    pub fn key_id_hex(&self) -> String {
        key_id_hex(self.key_id)
    }

    /// The base64 line of the public key (what `minisign -P` takes).
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::with_capacity(PUBLIC_BOX_LEN);
        bytes.extend_from_slice(&SIG_ALG);
        bytes.extend_from_slice(&self.key_id);
        bytes.extend_from_slice(self.key.as_bytes());
        BASE64.encode(bytes)
    }

    pub fn to_file_text(&self) -> String {
        format!("{COMMENT_PREFIX}minisign public key {}\n{}\n", self.key_id_hex(), self.to_base64())
    }
}

/// A secret signing key.
#[derive(Clone)]
pub struct SecretKey {
    key_id: [u8; KEY_ID_LEN],
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("key_id", &key_id_hex(self.key_id)).finish_non_exhaustive()
    }
}

/// The decoded fields of a secret key file, still encrypted if it was.
struct SecretBox {
    sig_alg: [u8; 2],
    kdf_alg: [u8; 2],
    chk_alg: [u8; 2],
    salt: [u8; SALT_LEN],
    opslimit: u64,
    memlimit: u64,
    keynum_sk: [u8; KEYNUM_SK_LEN],
}

impl Drop for SecretBox {
    fn drop(&mut self) {
        wipe(&mut self.keynum_sk);
    }
}

impl SecretBox {
    fn parse(text: &str) -> Result<SecretBox, Error> {
        const KIND: &str = "secret key";
        let mut lines = text.lines();
        let comment = lines.next().unwrap_or("");
        if !comment.starts_with(COMMENT_PREFIX.trim_end()) {
            return Err(key_error(KIND, format!("the first line must start with \"{COMMENT_PREFIX}\"")));
        }
        let line = lines.next().ok_or_else(|| key_error(KIND, "the key line after the comment is missing"))?;
        let mut bytes = decode_base64(line).ok_or_else(|| key_error(KIND, "the key is not valid base64"))?;
        if bytes.len() == PUBLIC_BOX_LEN {
            return Err(key_error(KIND, "this is a public key; give the secret key (.key) instead"));
        }
        if bytes.len() != SECRET_BOX_LEN {
            let len = bytes.len();
            wipe(&mut bytes);
            return Err(key_error(
                KIND,
                format!("the key is {len} bytes long, a minisign secret key is {SECRET_BOX_LEN}"),
            ));
        }
        let mut b = SecretBox {
            sig_alg: [0; 2],
            kdf_alg: [0; 2],
            chk_alg: [0; 2],
            salt: [0; SALT_LEN],
            opslimit: 0,
            memlimit: 0,
            keynum_sk: [0; KEYNUM_SK_LEN],
        };
        let mut rest: &[u8] = &bytes;
        take(&mut rest, &mut b.sig_alg);
        take(&mut rest, &mut b.kdf_alg);
        take(&mut rest, &mut b.chk_alg);
        take(&mut rest, &mut b.salt);
        let mut le = [0u8; 8];
        take(&mut rest, &mut le);
        b.opslimit = u64::from_le_bytes(le);
        take(&mut rest, &mut le);
        b.memlimit = u64::from_le_bytes(le);
        take(&mut rest, &mut b.keynum_sk);
        wipe(&mut bytes);

        if b.sig_alg != SIG_ALG {
            return Err(key_error(KIND, "unsupported signature algorithm (expected \"Ed\")"));
        }
        if b.chk_alg != CHK_BLAKE2B {
            return Err(key_error(KIND, "unsupported checksum algorithm (expected \"B2\")"));
        }
        if b.kdf_alg != KDF_SCRYPT && b.kdf_alg != KDF_NONE {
            return Err(key_error(KIND, "unsupported key derivation function (expected \"Sc\" or none)"));
        }
        Ok(b)
    }

    fn encrypted(&self) -> bool {
        self.kdf_alg == KDF_SCRYPT
    }

    /// Decrypt if needed, check the checksum and that the public half matches the seed.
    fn open(mut self, password: Option<&[u8]>) -> Result<SecretKey, Error> {
        const KIND: &str = "secret key";
        if self.encrypted() {
            let password = password.ok_or(Error::PasswordRequired)?;
            let mut stream = [0u8; KEYNUM_SK_LEN];
            derive_stream(password, &self.salt, self.opslimit, self.memlimit, &mut stream)?;
            for (b, s) in self.keynum_sk.iter_mut().zip(stream.iter()) {
                *b ^= s;
            }
            wipe(&mut stream);
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&self.keynum_sk[..KEY_ID_LEN]);
        let sk = &self.keynum_sk[KEY_ID_LEN..KEY_ID_LEN + 64];
        let stored = &self.keynum_sk[KEY_ID_LEN + 64..];
        let computed = checksum(&self.sig_alg, &key_id, sk);
        if !ct_eq(&computed, stored) {
            if self.encrypted() {
                return Err(Error::WrongPassword);
            }
            // `minisign -G -W` writes no checksum for an unencrypted key.
            if stored.iter().any(|&b| b != 0) {
                return Err(key_error(KIND, "checksum mismatch: the key file is corrupt"));
            }
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&sk[..32]);
        let key = SigningKey::from_bytes(&seed);
        wipe(&mut seed);
        if key.verifying_key().as_bytes()[..] != sk[32..] {
            return Err(key_error(KIND, "the public half does not match the secret seed: the key file is corrupt"));
        }
        Ok(SecretKey { key_id, key })
    }
}

impl SecretKey {
    /// A new key pair from the operating system's randomness.
    pub fn generate() -> Result<(SecretKey, PublicKey), Error> {
        let mut seed = [0u8; 32];
        let mut key_id = [0u8; KEY_ID_LEN];
        random(&mut seed)?;
        random(&mut key_id)?;
        let key = SigningKey::from_bytes(&seed);
        wipe(&mut seed);
        let secret = SecretKey { key_id, key };
        let public = secret.public_key();
        Ok((secret, public))
    }

    /// Load a secret key file; `password` is used only if the key is encrypted.
    pub fn from_file(path: &Path, password: Option<&[u8]>) -> Result<SecretKey, Error> {
        let text = read_key_text(path, "secret key")?;
        SecretBox::parse(&text).and_then(|b| b.open(password)).map_err(|e| e.at(path))
    }

    /// Whether a secret key file is encrypted (and so needs a password).
    pub fn is_encrypted_file(path: &Path) -> Result<bool, Error> {
        let text = read_key_text(path, "secret key")?;
        SecretBox::parse(&text).map(|b| b.encrypted()).map_err(|e| e.at(path))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey { key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// The secret key file's text: unencrypted without a password, otherwise encrypted with
    /// scrypt at the limits stock `minisign -G` uses (1 GiB of memory, a few seconds).
    pub fn to_file_text(&self, password: Option<&[u8]>) -> Result<String, Error> {
        self.to_file_text_with(password, OPSLIMIT_SENSITIVE, MEMLIMIT_SENSITIVE)
    }

    fn to_file_text_with(&self, password: Option<&[u8]>, opslimit: u64, memlimit: u64) -> Result<String, Error> {
        let mut keynum_sk = [0u8; KEYNUM_SK_LEN];
        keynum_sk[..KEY_ID_LEN].copy_from_slice(&self.key_id);
        let mut keypair = self.key.to_keypair_bytes();
        keynum_sk[KEY_ID_LEN..KEY_ID_LEN + 64].copy_from_slice(&keypair);
        let sum = checksum(&SIG_ALG, &self.key_id, &keypair);
        wipe(&mut keypair);
        keynum_sk[KEY_ID_LEN + 64..].copy_from_slice(&sum);

        let mut salt = [0u8; SALT_LEN];
        let (kdf_alg, opslimit, memlimit, comment) = match password {
            None => (KDF_NONE, 0, 0, "minisign secret key (unencrypted)"),
            Some(password) => {
                random(&mut salt)?;
                let mut stream = [0u8; KEYNUM_SK_LEN];
                derive_stream(password, &salt, opslimit, memlimit, &mut stream)?;
                for (b, s) in keynum_sk.iter_mut().zip(stream.iter()) {
                    *b ^= s;
                }
                wipe(&mut stream);
                (KDF_SCRYPT, opslimit, memlimit, "minisign encrypted secret key")
            }
        };
        let mut bytes = Vec::with_capacity(SECRET_BOX_LEN);
        bytes.extend_from_slice(&SIG_ALG);
        bytes.extend_from_slice(&kdf_alg);
        bytes.extend_from_slice(&CHK_BLAKE2B);
        bytes.extend_from_slice(&salt);
        bytes.extend_from_slice(&opslimit.to_le_bytes());
        bytes.extend_from_slice(&memlimit.to_le_bytes());
        bytes.extend_from_slice(&keynum_sk);
        wipe(&mut keynum_sk);
        let text = format!("{COMMENT_PREFIX}{comment}\n{}\n", BASE64.encode(&bytes));
        wipe(&mut bytes);
        Ok(text)
    }

    /// A prehashed ("ED") signature file over `message`. Line breaks and NUL bytes in the
    /// comments become spaces; comments longer than minisign accepts are cut
    /// (the trusted comment at [`TRUSTED_COMMENT_MAX`] bytes). What is returned is exactly
    /// what is signed.
    pub fn sign(&self, message: &[u8], untrusted_comment: &str, trusted_comment: &str) -> String {
        let untrusted = one_line(untrusted_comment, UNTRUSTED_COMMENT_MAX);
        let trusted = one_line(trusted_comment, TRUSTED_COMMENT_MAX);
        let digest = Blake2b512::digest(message);
        let signature = self.key.sign(&digest).to_bytes();

        let mut sig_box = Vec::with_capacity(SIGNATURE_BOX_LEN);
        sig_box.extend_from_slice(&SIG_ALG_PREHASHED);
        sig_box.extend_from_slice(&self.key_id);
        sig_box.extend_from_slice(&signature);

        let mut global_message = Vec::with_capacity(64 + trusted.len());
        global_message.extend_from_slice(&signature);
        global_message.extend_from_slice(trusted.as_bytes());
        let global = self.key.sign(&global_message).to_bytes();

        format!(
            "{COMMENT_PREFIX}{untrusted}\n{}\n{TRUSTED_COMMENT_PREFIX}{trusted}\n{}\n",
            BASE64.encode(sig_box),
            BASE64.encode(global)
        )
    }
}

/// Check a signature file's text over `message` with a trusted key; returns the trusted
/// comment. Accepts prehashed ("ED") and legacy ("Ed") signatures.
/// The file is taken as bytes: its untrusted comment need not be UTF-8 (stock minisign
/// does not care), but it must fit minisign's line limit.
pub fn verify(key: &PublicKey, message: &[u8], signature_file: impl AsRef<[u8]>) -> Result<String, Error> {
    let parsed = ParsedSignature::parse(signature_file.as_ref())?;
    if parsed.key_id != key.key_id {
        return Err(Error::KeyIdMismatch {
            signature_key_id: key_id_hex(parsed.key_id),
            trusted_key_id: key.key_id_hex(),
        });
    }
    let signature = Signature::from_bytes(&parsed.signature);
    let verified = if parsed.prehashed {
        key.key.verify_strict(&Blake2b512::digest(message), &signature)
    } else {
        key.key.verify_strict(message, &signature)
    };
    if verified.is_err() {
        return Err(Error::BadSignature);
    }
    let mut global_message = Vec::with_capacity(64 + parsed.trusted_comment.len());
    global_message.extend_from_slice(&parsed.signature);
    global_message.extend_from_slice(&parsed.trusted_comment);
    if key.key.verify_strict(&global_message, &Signature::from_bytes(&parsed.global_signature)).is_err() {
        return Err(Error::BadTrustedComment);
    }
    Ok(String::from_utf8_lossy(&parsed.trusted_comment).into_owned())
}

struct ParsedSignature {
    prehashed: bool,
    key_id: [u8; KEY_ID_LEN],
    signature: [u8; 64],
    /// Signed bytes, not necessarily UTF-8.
    trusted_comment: Vec<u8>,
    global_signature: [u8; 64],
}

impl ParsedSignature {
    fn parse(text: &[u8]) -> Result<ParsedSignature, Error> {
        let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let comment = lines.next().unwrap_or(b"");
        let Some(untrusted) = comment.strip_prefix(COMMENT_PREFIX.as_bytes()) else {
            return Err(malformed(format!("the first line must start with \"{COMMENT_PREFIX}\"")));
        };
        if untrusted.len() > UNTRUSTED_COMMENT_MAX {
            return Err(malformed(format!(
                "the untrusted comment is {} bytes long, more than minisign's limit of {UNTRUSTED_COMMENT_MAX}",
                untrusted.len()
            )));
        }
        let ascii = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
        let line = ascii(lines.next().ok_or_else(|| malformed("the signature line is missing"))?);
        let line = line.as_str();
        let bytes = decode_base64(line).ok_or_else(|| malformed("the signature line is not valid base64"))?;
        if bytes.len() != SIGNATURE_BOX_LEN {
            return Err(malformed(format!(
                "the signature is {} bytes long, a minisign signature is {SIGNATURE_BOX_LEN}",
                bytes.len()
            )));
        }
        let prehashed = match [bytes[0], bytes[1]] {
            SIG_ALG_PREHASHED => true,
            SIG_ALG => false,
            _ => return Err(malformed("unsupported signature algorithm (expected \"ED\" or \"Ed\")")),
        };
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&bytes[2..2 + KEY_ID_LEN]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[2 + KEY_ID_LEN..]);

        let line = lines.next().ok_or_else(|| malformed("the trusted comment line is missing"))?;
        let trusted_comment = line
            .strip_prefix(TRUSTED_COMMENT_PREFIX.as_bytes())
            .ok_or_else(|| malformed(format!("the third line must start with \"{TRUSTED_COMMENT_PREFIX}\"")))?;
        if trusted_comment.len() > TRUSTED_COMMENT_MAX {
            return Err(malformed(format!(
                "the trusted comment is {} bytes long, more than minisign's limit of {TRUSTED_COMMENT_MAX}",
                trusted_comment.len()
            )));
        }
        let line = ascii(lines.next().ok_or_else(|| malformed("the trusted comment's signature line is missing"))?);
        let bytes = decode_base64(&line)
            .ok_or_else(|| malformed("the trusted comment's signature line is not valid base64"))?;
        let global_signature: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| malformed(format!("the trusted comment's signature is {} bytes long, not 64", bytes.len())))?;
        if lines.any(|l| !l.trim_ascii().is_empty()) {
            return Err(malformed("unexpected text after the trusted comment's signature"));
        }
        Ok(ParsedSignature {
            prehashed,
            key_id,
            signature,
            trusted_comment: trusted_comment.to_vec(),
            global_signature,
        })
    }
}

/// The password for an encrypted secret key: the first line of `file` if given, else asked
/// on the terminal (echo off), else an error pointing to `--password-file`.
pub fn read_password(file: Option<&Path>, prompt: &str) -> Result<Vec<u8>, Error> {
    match file {
        Some(path) => password_from_file(path),
        None => password_from_terminal(prompt),
    }
}

fn password_from_file(path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = read_capped(path, MAX_PASSWORD_FILE)?;
    let Some(mut bytes) = bytes else {
        return Err(Error::Password(format!(
            "{}: a password file is one line, this one is larger than {MAX_PASSWORD_FILE} bytes",
            path.display()
        )));
    };
    if bytes.is_empty() {
        return Err(Error::Password(format!("{}: the password file is empty", path.display())));
    }
    let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let mut line = bytes[..end].to_vec();
    wipe(&mut bytes);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    check_password(line, &path.display().to_string())
}

fn check_password(mut password: Vec<u8>, origin: &str) -> Result<Vec<u8>, Error> {
    let problem = if password.len() > PASSWORD_MAX {
        Some(format!("the password is longer than {PASSWORD_MAX} bytes, minisign's limit"))
    } else if password.contains(&0) {
        Some("the password contains a NUL byte, which minisign cannot take".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => {
            wipe(&mut password);
            Err(Error::Password(format!("{origin}: {problem}")))
        }
        None => Ok(password),
    }
}

/// Asks on the controlling terminal with echo off (rpassword). No terminal at all is told
/// apart from a terminal that fails while reading, so the error can point to
/// `--password-file`.
fn password_from_terminal(prompt: &str) -> Result<Vec<u8>, Error> {
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/tty") {
        return Err(Error::Password(format!(
            "the secret key is encrypted and there is no terminal to ask for its password (/dev/tty: {e}); \
             use --password-file FILE"
        )));
    }
    let password = match rpassword::prompt_password(prompt) {
        Ok(password) => password.into_bytes(),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(Error::Password("no password was entered".to_string()))
        }
        Err(e) => return Err(Error::io("/dev/tty", e)),
    };
    check_password(password, "terminal")
}

/// libsodium's mapping of scryptsalsa208sha256 opslimit/memlimit to scrypt's (log2 N, r, p),
/// which keys made by minisign depend on.
fn pick_params(opslimit: u64, memlimit: u64) -> (u32, u32, u32) {
    let opslimit = opslimit.max(32768);
    let r: u32 = 8;
    let mut n_log2: u32 = 1;
    if opslimit < memlimit / 32 {
        let max_n = opslimit / (u64::from(r) * 4);
        while n_log2 < 63 && (1u64 << n_log2) <= max_n / 2 {
            n_log2 += 1;
        }
        (n_log2, r, 1)
    } else {
        let max_n = memlimit / (u64::from(r) * 128);
        while n_log2 < 63 && (1u64 << n_log2) <= max_n / 2 {
            n_log2 += 1;
        }
        let max_rp = ((opslimit / 4) / (1u64 << n_log2)).min(0x3fff_ffff);
        // libsodium: `*p = (uint32_t)(maxrp) / *r` (max_rp fits in u32 after the cap).
        let p = u32::try_from(max_rp).unwrap_or(0x3fff_ffff) / r;
        (n_log2, r, p)
    }
}

/// crypto_pwhash_scryptsalsa208sha256(out, password, salt, opslimit, memlimit).
fn derive_stream(
    password: &[u8],
    salt: &[u8; SALT_LEN],
    opslimit: u64,
    memlimit: u64,
    out: &mut [u8],
) -> Result<(), Error> {
    let (n_log2, r, p) = pick_params(opslimit, memlimit);
    let memory = (128 * u128::from(r)) << n_log2;
    let work = (u128::from(r) * u128::from(p)) << n_log2;
    if memory > KDF_MAX_MEMORY || work > KDF_MAX_WORK {
        return Err(Error::Kdf(format!(
            "the secret key asks for scrypt parameters (N = 2^{n_log2}, r = {r}, p = {p}; {} MiB of \
             memory) beyond what airlift accepts (at most {} MiB, 16 times stock minisign's work)",
            memory >> 20,
            KDF_MAX_MEMORY >> 20
        )));
    }
    let params = u8::try_from(n_log2).ok().and_then(|n| scrypt::Params::new(n, r, p, 32).ok()).ok_or_else(|| {
        Error::Kdf(format!("invalid scrypt parameters in the secret key (N = 2^{n_log2}, r = {r}, p = {p})"))
    })?;
    scrypt::scrypt(password, salt, &params, out).map_err(|e| Error::Kdf(format!("scrypt key derivation failed: {e}")))
}

/// BLAKE2b-256(sig_alg | key id | secret key), minisign's secret key checksum.
fn checksum(sig_alg: &[u8; 2], key_id: &[u8; KEY_ID_LEN], sk: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = Blake2b::<U32>::new();
    h.update(sig_alg);
    h.update(key_id);
    h.update(sk);
    h.finalize().into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::getrandom(buf).map_err(|e| Error::Random(e.to_string()))
}

/// Best-effort clearing of secret material.
fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(&*buf);
}

/// Copy the next `dst.len()` bytes of `src` (long enough, checked by the caller).
fn take(src: &mut &[u8], dst: &mut [u8]) {
    let (head, tail) = src.split_at(dst.len().min(src.len()));
    dst[..head.len()].copy_from_slice(head);
    *src = tail;
}

fn decode_base64(line: &str) -> Option<Vec<u8>> {
    let line = line.trim();
    // The longest box (a secret key) is 158 bytes, 212 characters of base64.
    if line.is_empty() || line.len() > 256 {
        return None;
    }
    BASE64.decode(line).ok()
}

/// A comment on one line, cut at `max` bytes on a character boundary.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if matches!(c, '\n' | '\r' | '\0') { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Read a whole file of at most `limit` bytes; `None` when it is larger.
fn read_capped(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, Error> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        wipe(&mut bytes);
        return Ok(None);
    }
    Ok(Some(bytes))
}

fn read_key_text(path: &Path, kind: &'static str) -> Result<String, Error> {
    let bytes = read_capped(path, MAX_KEY_FILE)?
        .ok_or_else(|| key_error(kind, format!("the file is larger than {MAX_KEY_FILE} bytes")).at(path))?;
    String::from_utf8(bytes).map_err(|e| {
        let mut bytes = e.into_bytes();
        wipe(&mut bytes);
        key_error(kind, "the file is not text").at(path)
    })
}

impl Error {
    fn io(path: impl AsRef<Path>, source: io::Error) -> Error {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    const PLAIN_KEY: &str = include_str!("../testdata/keys/minisign-plain.key");
    const PLAIN_PUB: &str = include_str!("../testdata/keys/minisign-plain.pub");
    const ENCRYPTED_KEY: &str = include_str!("../testdata/keys/minisign-encrypted.key");
    const ENCRYPTED_PUB: &str = include_str!("../testdata/keys/minisign-encrypted.pub");
    const ENCRYPTED_PASSWORD: &[u8] = b"airlift test password";
    const MESSAGE: &[u8] = include_bytes!("../testdata/keys/message.txt");
    const SIG_PREHASHED: &str = include_str!("../testdata/keys/message.txt.minisig");
    const SIG_LEGACY: &str = include_str!("../testdata/keys/message.txt.legacy.minisig");
    const SIG_ENCRYPTED_KEY: &str = include_str!("../testdata/keys/message.txt.encrypted-key.minisig");

    /// Cheap scrypt limits for tests that only need some encrypted key (N = 2^14).
    const TEST_OPSLIMIT: u64 = 524_288;
    const TEST_MEMLIMIT: u64 = 16_777_216;

    fn open_text(text: &str, password: Option<&[u8]>) -> Result<SecretKey, Error> {
        SecretBox::parse(text)?.open(password)
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("airlift-minisign").tempdir().expect("tempdir")
    }

    /// Like tests/common's `have`: skip when minisign is missing, fail under CI=true.
    fn have_minisign() -> bool {
        let found = Command::new("minisign").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "minisign is required under CI=true");
            eprintln!("skipping: minisign is not installed");
        }
        found
    }

    fn minisign(args: &[&std::ffi::OsStr], stdin: &[u8]) -> std::process::Output {
        let mut child = Command::new("minisign")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run minisign");
        child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
        child.wait_with_output().expect("wait for minisign")
    }

    fn assert_success(out: &std::process::Output, what: &str) {
        assert!(
            out.status.success(),
            "{what} failed with {}:\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn pick_params_matches_libsodium() {
        // minisign -G: crypto_pwhash_scryptsalsa208sha256_{OPS,MEM}LIMIT_SENSITIVE.
        assert_eq!(pick_params(OPSLIMIT_SENSITIVE, MEMLIMIT_SENSITIVE), (20, 8, 1));
        // ..._INTERACTIVE.
        assert_eq!(pick_params(524_288, 16_777_216), (14, 8, 1));
        // The halving minisign does when memory is short keeps p = 1.
        assert_eq!(pick_params(OPSLIMIT_SENSITIVE / 2, MEMLIMIT_SENSITIVE / 2), (19, 8, 1));
        // opslimit is raised to 32768; memlimit 0 gives the smallest N and a large p.
        assert_eq!(pick_params(0, 0), (1, 8, 512));
        // opslimit < memlimit / 32: N from opslimit, p = 1.
        assert_eq!(pick_params(32768, 1 << 30), (10, 8, 1));
        // Huge values never overflow.
        assert_eq!(pick_params(u64::MAX, u64::MAX).0, 53);
        assert_eq!(pick_params(u64::MAX - 1, u64::MAX).0, 53);
    }

    #[test]
    fn key_id_is_printed_like_minisign() {
        let pk = PublicKey::parse(PLAIN_PUB).unwrap();
        assert_eq!(pk.key_id_hex(), "0C8CA18EC1BA77F9");
        assert_eq!(pk.key_id(), [0xF9, 0x77, 0xBA, 0xC1, 0x8E, 0xA1, 0x8C, 0x0C]);
        let pk = PublicKey::parse(ENCRYPTED_PUB).unwrap();
        assert_eq!(pk.key_id_hex(), "152D1DCF80AAB664");
        assert!(pk.to_file_text().starts_with("untrusted comment: minisign public key 152D1DCF80AAB664\n"));
    }

    #[test]
    fn public_key_file_and_bare_base64_parse_the_same() {
        let from_file = PublicKey::parse(PLAIN_PUB).unwrap();
        let bare = PublicKey::parse("RWT5d7rBjqGMDHEa+jqB9HrXbNbv03y2aQydcNWNMc5d5pyqJazU3Wi9\n").unwrap();
        assert_eq!(from_file, bare);
        assert_eq!(from_file.to_base64(), "RWT5d7rBjqGMDHEa+jqB9HrXbNbv03y2aQydcNWNMc5d5pyqJazU3Wi9");
        assert_eq!(PublicKey::parse(&from_file.to_file_text()).unwrap(), from_file);
    }

    #[test]
    fn stock_minisign_signatures_verify() {
        let pk = PublicKey::parse(PLAIN_PUB).unwrap();
        assert_eq!(verify(&pk, MESSAGE, SIG_PREHASHED).unwrap(), "test signature, prehashed");
        assert_eq!(verify(&pk, MESSAGE, SIG_LEGACY).unwrap(), "test signature, legacy");
        let pk = PublicKey::parse(ENCRYPTED_PUB).unwrap();
        assert_eq!(verify(&pk, MESSAGE, SIG_ENCRYPTED_KEY).unwrap(), "signed with the encrypted test key");
    }

    #[test]
    fn stock_minisign_unencrypted_key_loads_and_signs() {
        // minisign -G -W leaves the checksum all zero.
        let sk = open_text(PLAIN_KEY, None).unwrap();
        assert_eq!(sk.public_key(), PublicKey::parse(PLAIN_PUB).unwrap());
        let sig = sk.sign(b"data", "u", "t");
        assert_eq!(verify(&sk.public_key(), b"data", &sig).unwrap(), "t");
        // A password given for an unencrypted key is ignored.
        assert_eq!(open_text(PLAIN_KEY, Some(b"whatever")).unwrap().public_key(), sk.public_key());
    }

    #[test]
    fn stock_minisign_encrypted_key_decrypts_with_its_password_only() {
        // The full 1 GiB scrypt of `minisign -G`, so this exercises pick_params for real.
        let sk = open_text(ENCRYPTED_KEY, Some(ENCRYPTED_PASSWORD)).unwrap();
        assert_eq!(sk.public_key(), PublicKey::parse(ENCRYPTED_PUB).unwrap());
        let err = open_text(ENCRYPTED_KEY, Some(b"airlift test passwore")).unwrap_err();
        assert!(matches!(err, Error::WrongPassword), "{err}");
        assert!(!err.is_integrity());
        let err = open_text(ENCRYPTED_KEY, None).unwrap_err();
        assert!(matches!(err, Error::PasswordRequired), "{err}");
    }

    #[test]
    fn generated_unencrypted_key_round_trips() {
        let (sk, pk) = SecretKey::generate().unwrap();
        assert_eq!(sk.public_key(), pk);
        let text = sk.to_file_text(None).unwrap();
        let b = SecretBox::parse(&text).unwrap();
        assert!(!b.encrypted());
        assert_eq!((b.opslimit, b.memlimit, b.salt), (0, 0, [0; SALT_LEN]));
        let loaded = b.open(None).unwrap();
        assert_eq!(loaded.public_key(), pk);
        assert_eq!(PublicKey::parse(&pk.to_file_text()).unwrap(), pk);
        // Two generated keys differ in key and key id.
        let (_, other) = SecretKey::generate().unwrap();
        assert_ne!(other.key_id(), pk.key_id());
        assert_ne!(other, pk);
    }

    #[test]
    fn generated_encrypted_key_round_trips_and_rejects_wrong_password() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let text = sk.to_file_text_with(Some(b"pw"), TEST_OPSLIMIT, TEST_MEMLIMIT).unwrap();
        let b = SecretBox::parse(&text).unwrap();
        assert!(b.encrypted());
        assert_eq!((b.opslimit, b.memlimit), (TEST_OPSLIMIT, TEST_MEMLIMIT));
        // The key id is not readable without the password.
        assert_ne!(b.keynum_sk[..KEY_ID_LEN], pk.key_id());
        assert_eq!(open_text(&text, Some(b"pw")).unwrap().public_key(), pk);
        assert!(matches!(open_text(&text, Some(b"pW")), Err(Error::WrongPassword)));
        assert!(matches!(open_text(&text, Some(b"")), Err(Error::WrongPassword)));
        assert!(matches!(open_text(&text, None), Err(Error::PasswordRequired)));
        // Encrypting twice uses fresh salts.
        let again = sk.to_file_text_with(Some(b"pw"), TEST_OPSLIMIT, TEST_MEMLIMIT).unwrap();
        assert_ne!(text, again);
    }

    #[test]
    fn default_encryption_uses_minisign_limits() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let text = sk.to_file_text(Some(b"pw")).unwrap();
        let b = SecretBox::parse(&text).unwrap();
        assert_eq!((b.kdf_alg, b.opslimit, b.memlimit), (KDF_SCRYPT, OPSLIMIT_SENSITIVE, MEMLIMIT_SENSITIVE));
        assert_eq!(b.open(Some(b"pw")).unwrap().public_key(), pk);
    }

    #[test]
    fn corrupt_secret_keys_are_refused() {
        let (sk, _) = SecretKey::generate().unwrap();
        let text = sk.to_file_text(None).unwrap();
        let line = text.lines().nth(1).unwrap();
        let bytes = BASE64.decode(line).unwrap();
        let rewrite = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            edit(&mut b);
            format!("untrusted comment: x\n{}\n", BASE64.encode(b))
        };
        // A flipped bit in the seed: checksum mismatch.
        let err = open_text(&rewrite(&|b| b[70] ^= 1), None).unwrap_err();
        assert!(matches!(err, Error::Key { .. }) && err.to_string().contains("corrupt"), "{err}");
        // Checksum cleared (as minisign -W does) but seed altered: public half check.
        let err = open_text(
            &rewrite(&|b| {
                b[70] ^= 1;
                let n = b.len();
                b[n - 32..].fill(0);
            }),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("public half"), "{err}");
        // Unsupported algorithms.
        let err = open_text(&rewrite(&|b| b[2] = b'X'), None).unwrap_err();
        assert!(err.to_string().contains("key derivation"), "{err}");
        let err = open_text(&rewrite(&|b| b[4] = b'X'), None).unwrap_err();
        assert!(err.to_string().contains("checksum algorithm"), "{err}");
        let err = open_text(&rewrite(&|b| b[0] = b'X'), None).unwrap_err();
        assert!(err.to_string().contains("signature algorithm"), "{err}");
        // A public key where a secret key is expected, and the other way round.
        let err = open_text(PLAIN_PUB, None).unwrap_err();
        assert!(err.to_string().contains("this is a public key"), "{err}");
        let err = PublicKey::parse(PLAIN_KEY).unwrap_err();
        assert!(err.to_string().contains("this is a secret key"), "{err}");
    }

    #[test]
    fn hostile_kdf_limits_are_refused_before_allocating() {
        let (sk, _) = SecretKey::generate().unwrap();
        let text = sk.to_file_text_with(Some(b"pw"), TEST_OPSLIMIT, TEST_MEMLIMIT).unwrap();
        let mut bytes = BASE64.decode(text.lines().nth(1).unwrap()).unwrap();
        bytes[38..46].copy_from_slice(&u64::MAX.to_le_bytes());
        bytes[46..54].copy_from_slice(&u64::MAX.to_le_bytes());
        let text = format!("untrusted comment: x\n{}\n", BASE64.encode(&bytes));
        let err = open_text(&text, Some(b"pw")).unwrap_err();
        assert!(matches!(err, Error::Kdf(_)), "{err}");
        assert!(err.to_string().contains("beyond what airlift accepts"), "{err}");
        // Twice the default memory and work is still accepted (it fails on the password,
        // which shows the derivation ran): check only the limit, not the 2 GiB scrypt.
        let (n, r, p) = pick_params(OPSLIMIT_SENSITIVE * 2, MEMLIMIT_SENSITIVE * 2);
        assert!((128 * u128::from(r)) << n <= KDF_MAX_MEMORY);
        assert!((u128::from(r) * u128::from(p)) << n <= KDF_MAX_WORK);
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let sig = sk.sign(b"manifest bytes", "airlift bundle signature", "bundle:abc\tsequence:7");
        let lines: Vec<&str> = sig.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "untrusted comment: airlift bundle signature");
        assert_eq!(&BASE64.decode(lines[1]).unwrap()[..2], b"ED");
        assert_eq!(lines[2], "trusted comment: bundle:abc\tsequence:7");
        assert!(sig.ends_with('\n'));
        assert_eq!(verify(&pk, b"manifest bytes", &sig).unwrap(), "bundle:abc\tsequence:7");
        // CRLF line endings (a signature copied through a Windows machine) still verify.
        assert_eq!(verify(&pk, b"manifest bytes", sig.replace('\n', "\r\n")).unwrap(), "bundle:abc\tsequence:7");
        // Empty message and empty comments.
        let sig = sk.sign(b"", "", "");
        assert_eq!(verify(&pk, b"", &sig).unwrap(), "");
    }

    #[test]
    fn tampered_message_is_an_integrity_error() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let sig = sk.sign(b"manifest bytes", "u", "t");
        let err = verify(&pk, b"manifest byteS", &sig).unwrap_err();
        assert!(matches!(err, Error::BadSignature), "{err}");
        assert!(err.is_integrity());
        let err = verify(&pk, b"manifest bytes\n", &sig).unwrap_err();
        assert!(matches!(err, Error::BadSignature), "{err}");
    }

    #[test]
    fn tampered_trusted_comment_is_an_integrity_error() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let sig = sk.sign(b"m", "u", "sequence:7");
        let forged = sig.replace("trusted comment: sequence:7", "trusted comment: sequence:8");
        assert_ne!(forged, sig);
        let err = verify(&pk, b"m", &forged).unwrap_err();
        assert!(matches!(err, Error::BadTrustedComment), "{err}");
        assert!(err.is_integrity());
        // The untrusted comment is not signed.
        let relabelled = sig.replace("untrusted comment: u", "untrusted comment: anything");
        assert_eq!(verify(&pk, b"m", &relabelled).unwrap(), "sequence:7");
    }

    #[test]
    fn signature_by_another_key_is_a_key_id_mismatch() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let (other_sk, other_pk) = SecretKey::generate().unwrap();
        let sig = other_sk.sign(b"m", "u", "t");
        let err = verify(&pk, b"m", &sig).unwrap_err();
        match &err {
            Error::KeyIdMismatch { signature_key_id, trusted_key_id } => {
                assert_eq!(signature_key_id, &other_pk.key_id_hex());
                assert_eq!(trusted_key_id, &pk.key_id_hex());
            }
            other => panic!("expected a key id mismatch, got {other}"),
        }
        assert!(err.is_integrity());
        // Another key claiming our key id: the signature does not verify.
        let impostor = SecretKey { key_id: sk.key_id, key: other_sk.key.clone() };
        let err = verify(&pk, b"m", impostor.sign(b"m", "u", "t")).unwrap_err();
        assert!(matches!(err, Error::BadSignature), "{err}");
    }

    #[test]
    fn legacy_signatures_verify_and_prehash_is_not_confused_with_legacy() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let sig = sk.key.sign(b"m").to_bytes();
        let global = sk.key.sign(&[&sig[..], b"legacy"].concat()).to_bytes();
        let mut sig_box = b"Ed".to_vec();
        sig_box.extend_from_slice(&sk.key_id);
        sig_box.extend_from_slice(&sig);
        let text = format!(
            "untrusted comment: x\n{}\ntrusted comment: legacy\n{}\n",
            BASE64.encode(&sig_box),
            BASE64.encode(global)
        );
        assert_eq!(verify(&pk, b"m", &text).unwrap(), "legacy");
        // The same signature relabelled "ED" must fail: it was not over the hash.
        sig_box[1] = b'D';
        let relabelled = format!(
            "untrusted comment: x\n{}\ntrusted comment: legacy\n{}\n",
            BASE64.encode(&sig_box),
            BASE64.encode(global)
        );
        assert!(matches!(verify(&pk, b"m", &relabelled), Err(Error::BadSignature)));
    }

    #[test]
    fn comments_are_kept_on_one_line_and_within_minisign_limits() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let sig = sk.sign(b"m", "a\nb", "c\r\nd\0e");
        assert_eq!(sig.lines().count(), 4);
        assert_eq!(verify(&pk, b"m", &sig).unwrap(), "c  d e");
        let long = "é".repeat(TRUSTED_COMMENT_MAX);
        let sig = sk.sign(b"m", &long, &long);
        let tc = verify(&pk, b"m", &sig).unwrap();
        assert!(tc.len() <= TRUSTED_COMMENT_MAX && tc.len() > TRUSTED_COMMENT_MAX - 2);
        assert!(sig.lines().next().unwrap().len() < 1023);
        // A trusted comment longer than minisign reads is malformed.
        let global = sk.key.sign(b"x").to_bytes();
        let text = format!(
            "untrusted comment: x\n{}\ntrusted comment: {}\n{}\n",
            sig.lines().nth(1).unwrap(),
            "a".repeat(TRUSTED_COMMENT_MAX + 1),
            BASE64.encode(global)
        );
        let err = verify(&pk, b"m", &text).unwrap_err();
        assert!(matches!(err, Error::MalformedSignature(_)) && err.is_integrity(), "{err}");
    }

    #[test]
    fn malformed_signatures_are_integrity_errors() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let sig = sk.sign(b"m", "u", "t");
        let lines: Vec<&str> = sig.lines().collect();
        let cases = [
            String::new(),
            "garbage".to_string(),
            lines[0].to_string(),
            lines[..2].join("\n"),
            lines[..3].join("\n"),
            format!("comment: u\n{}\n{}\n{}\n", lines[1], lines[2], lines[3]),
            format!("{}\n{}\nt\n{}\n", lines[0], lines[1], lines[3]),
            format!("{}\n!!!\n{}\n{}\n", lines[0], lines[2], lines[3]),
            format!("{}\n{}\n{}\n{}\n", lines[0], &lines[1][..40], lines[2], lines[3]),
            format!("{sig}extra line\n"),
            sig.replacen("RU", "RX", 1),
        ];
        for case in &cases {
            let err = verify(&pk, b"m", case).unwrap_err();
            assert!(err.is_integrity(), "{case:?}: {err}");
            assert!(matches!(err, Error::MalformedSignature(_)), "{case:?}: {err}");
        }
        // Trailing blank lines are fine.
        assert_eq!(verify(&pk, b"m", format!("{sig}\n\n")).unwrap(), "t");
    }

    #[test]
    fn malformed_input_never_panics() {
        let (sk, pk) = SecretKey::generate().unwrap();
        let sig = sk.sign(b"m", "u", "t");
        let key_text = sk.to_file_text(None).unwrap();
        let pub_text = pk.to_file_text();
        for text in [&sig, &key_text, &pub_text, &SIG_LEGACY.to_string()] {
            // Every prefix (on char boundaries; all of these are ASCII).
            for end in 0..text.len() {
                let cut = &text[..end];
                let _ = verify(&pk, b"m", cut);
                let _ = PublicKey::parse(cut);
                let _ = SecretBox::parse(cut).and_then(|b| b.open(None));
            }
            // Every single-character substitution with a few interesting characters.
            for i in 0..text.len() {
                for c in ['A', '/', '=', '\n', ' ', '\0', 'é'] {
                    let mut s = text[..i].to_string();
                    s.push(c);
                    s.push_str(&text[i + 1..]);
                    let _ = verify(&pk, b"m", &s);
                    let _ = PublicKey::parse(&s);
                    let _ = SecretBox::parse(&s).and_then(|b| b.open(None));
                }
            }
        }
        // Changing any byte of the decoded signature is detected.
        let sig_line = sig.lines().nth(1).unwrap();
        let bytes = BASE64.decode(sig_line).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let text = sig.replacen(sig_line, &BASE64.encode(&b), 1);
            let err = verify(&pk, b"m", &text).unwrap_err();
            assert!(err.is_integrity(), "byte {i}: {err}");
        }
    }

    #[test]
    fn files_name_themselves_in_errors() {
        let dir = tempdir();
        let missing = dir.path().join("missing.pub");
        let err = PublicKey::from_file(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }) && !err.is_integrity());
        assert!(err.to_string().contains("missing.pub"), "{err}");

        let bad = dir.path().join("bad.pub");
        std::fs::write(&bad, "untrusted comment: x\nnot base64\n").unwrap();
        let err = PublicKey::from_file(&bad).unwrap_err();
        assert!(err.to_string().starts_with(&format!("{}: not a usable minisign public key", bad.display())), "{err}");
        assert!(!err.is_integrity());

        let big = dir.path().join("big.key");
        std::fs::write(&big, vec![b'a'; 100_000]).unwrap();
        let err = SecretKey::from_file(&big, None).unwrap_err();
        assert!(err.to_string().contains("big.key") && err.to_string().contains("larger"), "{err}");

        let binary = dir.path().join("binary.key");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let err = SecretKey::from_file(&binary, None).unwrap_err();
        assert!(err.to_string().contains("not text"), "{err}");

        let enc = dir.path().join("enc.key");
        std::fs::write(&enc, ENCRYPTED_KEY).unwrap();
        assert!(SecretKey::is_encrypted_file(&enc).unwrap());
        let err = SecretKey::from_file(&enc, None).unwrap_err();
        assert!(err.to_string().starts_with(&format!("{}: the secret key is encrypted", enc.display())), "{err}");
        let plain = dir.path().join("plain.key");
        std::fs::write(&plain, PLAIN_KEY).unwrap();
        assert!(!SecretKey::is_encrypted_file(&plain).unwrap());
        assert_eq!(SecretKey::from_file(&plain, None).unwrap().public_key(), PublicKey::parse(PLAIN_PUB).unwrap());

        // An integrity error keeps its class when a file is named.
        let err = Error::BadSignature.at(Path::new("x.minisig"));
        assert!(err.is_integrity());
        assert_eq!(err.to_string(), format!("x.minisig: {}", Error::BadSignature));
    }

    #[test]
    fn password_file_first_line_is_the_password() {
        let dir = tempdir();
        let file = dir.path().join("pw");
        std::fs::write(&file, "correct horse\r\nsecond line\n").unwrap();
        assert_eq!(read_password(Some(&file), "Password: ").unwrap(), b"correct horse");
        std::fs::write(&file, "no newline").unwrap();
        assert_eq!(read_password(Some(&file), "").unwrap(), b"no newline");
        std::fs::write(&file, " spaces kept \n").unwrap();
        assert_eq!(read_password(Some(&file), "").unwrap(), b" spaces kept ");
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(read_password(Some(&file), "").unwrap(), b"");

        std::fs::write(&file, "").unwrap();
        let err = read_password(Some(&file), "").unwrap_err();
        assert!(err.to_string().contains("empty") && err.to_string().contains("pw"), "{err}");
        std::fs::write(&file, vec![b'a'; PASSWORD_MAX + 1]).unwrap();
        let err = read_password(Some(&file), "").unwrap_err();
        assert!(err.to_string().contains("longer than 1023"), "{err}");
        std::fs::write(&file, vec![b'a'; PASSWORD_MAX]).unwrap();
        assert_eq!(read_password(Some(&file), "").unwrap().len(), PASSWORD_MAX);
        std::fs::write(&file, b"a\0b\n").unwrap();
        assert!(read_password(Some(&file), "").unwrap_err().to_string().contains("NUL"));
        let err = read_password(Some(&dir.path().join("absent")), "").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn minisign_verifies_what_airlift_signs() {
        if !have_minisign() {
            return;
        }
        let dir = tempdir();
        let (sk, pk) = SecretKey::generate().unwrap();
        let pub_file = dir.path().join("k.pub");
        std::fs::write(&pub_file, pk.to_file_text()).unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, b"bundle manifest\n").unwrap();
        let sig_file = dir.path().join("data.minisig");
        std::fs::write(&sig_file, sk.sign(b"bundle manifest\n", "airlift", "bundle:x\tsequence:3")).unwrap();

        // -H insists on a prehashed signature; -Q prints only the trusted comment.
        let out = minisign(
            &[
                "-V".as_ref(),
                "-H".as_ref(),
                "-Q".as_ref(),
                "-p".as_ref(),
                pub_file.as_os_str(),
                "-m".as_ref(),
                data.as_os_str(),
            ],
            b"",
        );
        assert_success(&out, "minisign -V");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bundle:x\tsequence:3\n");
        // And with the bare key (-P).
        let out =
            minisign(&["-V".as_ref(), "-P".as_ref(), pk.to_base64().as_ref(), "-m".as_ref(), data.as_os_str()], b"");
        assert_success(&out, "minisign -V -P");

        // minisign rejects the same signature over altered data.
        std::fs::write(&data, b"bundle manifesT\n").unwrap();
        let out = minisign(&["-V".as_ref(), "-p".as_ref(), pub_file.as_os_str(), "-m".as_ref(), data.as_os_str()], b"");
        assert!(!out.status.success(), "minisign accepted altered data");
    }

    #[test]
    fn minisign_signs_with_airlift_keys_and_airlift_with_minisign_keys() {
        if !have_minisign() {
            return;
        }
        let dir = tempdir();
        let data = dir.path().join("data");
        std::fs::write(&data, b"payload").unwrap();

        // An unencrypted airlift key: minisign signs without asking for a password (stdin is
        // empty, so a prompt would read EOF and fail).
        let (sk, pk) = SecretKey::generate().unwrap();
        let key_file = dir.path().join("airlift.key");
        std::fs::write(&key_file, sk.to_file_text(None).unwrap()).unwrap();
        let sig_file = dir.path().join("a.minisig");
        let out = minisign(
            &[
                "-S".as_ref(),
                "-s".as_ref(),
                key_file.as_os_str(),
                "-m".as_ref(),
                data.as_os_str(),
                "-x".as_ref(),
                sig_file.as_os_str(),
                "-t".as_ref(),
                "by minisign".as_ref(),
            ],
            b"",
        );
        assert_success(&out, "minisign -S with an airlift key");
        let sig = std::fs::read_to_string(&sig_file).unwrap();
        assert_eq!(verify(&pk, b"payload", &sig).unwrap(), "by minisign");

        // A key made by minisign -G -W, loaded by airlift.
        let (mkey, mpub) = (dir.path().join("m.key"), dir.path().join("m.pub"));
        let out = minisign(
            &["-G".as_ref(), "-W".as_ref(), "-p".as_ref(), mpub.as_os_str(), "-s".as_ref(), mkey.as_os_str()],
            b"",
        );
        assert_success(&out, "minisign -G -W");
        assert!(!SecretKey::is_encrypted_file(&mkey).unwrap());
        let sk = SecretKey::from_file(&mkey, None).unwrap();
        let mpk = PublicKey::from_file(&mpub).unwrap();
        assert_eq!(sk.public_key(), mpk);
        let sig_file = dir.path().join("m.minisig");
        std::fs::write(&sig_file, sk.sign(b"payload", "u", "by airlift")).unwrap();
        let out = minisign(
            &[
                "-V".as_ref(),
                "-H".as_ref(),
                "-p".as_ref(),
                mpub.as_os_str(),
                "-m".as_ref(),
                data.as_os_str(),
                "-x".as_ref(),
                sig_file.as_os_str(),
            ],
            b"",
        );
        assert_success(&out, "minisign -V of an airlift signature");
        assert!(String::from_utf8_lossy(&out.stdout).contains("by airlift"));
    }

    #[test]
    fn minisign_encrypted_keys_interoperate() {
        if !have_minisign() {
            return;
        }
        let dir = tempdir();
        let data = dir.path().join("data");
        std::fs::write(&data, b"payload").unwrap();

        // minisign -G reads the password (twice) from stdin when it is not a terminal.
        let (mkey, mpub) = (dir.path().join("m.key"), dir.path().join("m.pub"));
        let out = minisign(
            &["-G".as_ref(), "-p".as_ref(), mpub.as_os_str(), "-s".as_ref(), mkey.as_os_str()],
            b"s3cret\ns3cret\n",
        );
        assert_success(&out, "minisign -G");
        assert!(SecretKey::is_encrypted_file(&mkey).unwrap());
        let sk = SecretKey::from_file(&mkey, Some(b"s3cret")).unwrap();
        assert_eq!(sk.public_key(), PublicKey::from_file(&mpub).unwrap());
        let err = SecretKey::from_file(&mkey, Some(b"s3cre")).unwrap_err();
        assert!(err.to_string().contains("wrong password"), "{err}");

        // An airlift-encrypted key (minisign's own limits): minisign decrypts it.
        let (sk, pk) = SecretKey::generate().unwrap();
        let key_file = dir.path().join("airlift.key");
        std::fs::write(&key_file, sk.to_file_text(Some(b"open sesame")).unwrap()).unwrap();
        let sig_file = dir.path().join("a.minisig");
        let sign = |password: &[u8]| {
            minisign(
                &[
                    "-S".as_ref(),
                    "-s".as_ref(),
                    key_file.as_os_str(),
                    "-m".as_ref(),
                    data.as_os_str(),
                    "-x".as_ref(),
                    sig_file.as_os_str(),
                    "-t".as_ref(),
                    "enc".as_ref(),
                ],
                password,
            )
        };
        assert_success(&sign(b"open sesame\n"), "minisign -S with an encrypted airlift key");
        assert_eq!(verify(&pk, b"payload", std::fs::read_to_string(&sig_file).unwrap()).unwrap(), "enc");
        let out = sign(b"open sesamE\n");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Wrong password"), "{out:?}");
    }
}
