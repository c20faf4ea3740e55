//! Signing the manifest and SHA256SUMS in minisign's format, with a trusted comment
//! that binds the signature to the bundle id, name, sequence and expiry.

use crate::bundle::manifest::Manifest;
use crate::error::{integrity, Result};
use crate::minisign::{PublicKey, SecretKey};

/// The trusted comment signed alongside `file`.
pub fn trusted_comment(m: &Manifest, file: &str) -> String {
    let expires = m.expires.map(|e| e.to_string()).unwrap_or_else(|| "never".into());
    format!(
        "timestamp:{} bundle:{} name:{} sequence:{} expires:{} file:{file}",
        m.created, m.id, m.name, m.sequence, expires
    )
}

pub fn sign(key: &SecretKey, bytes: &[u8], m: &Manifest, file: &str) -> String {
    key.sign(bytes, "signature from airlift secret key", &trusted_comment(m, file))
}

/// Check a signature; returns the trusted comment (not yet compared with a manifest).
pub fn verify(key: &PublicKey, bytes: &[u8], signature: &[u8]) -> Result<String> {
    Ok(crate::minisign::verify(key, bytes, signature)?)
}

/// The signed trusted comment must describe this manifest and file: a signature made
/// for another bundle, sequence or file is refused.
pub fn check_comment(comment: &str, m: &Manifest, file: &str) -> Result<()> {
    let expected = trusted_comment(m, file);
    if comment == expected {
        Ok(())
    } else {
        Err(integrity(format!(
            "the signature of {file} was made for another bundle: trusted comment '{}', expected '{expected}'",
            comment.escape_debug()
        )))
    }
}

/// `SHA256SUMS` text: one `<hex>  <volume file>` line per volume (data, then recovery), as
/// `sha256sum` writes.
pub fn sums_text(m: &Manifest) -> String {
    m.all_volumes().map(|v| format!("{}  {}\n", v.sha256.hex(), v.file)).collect()
}
