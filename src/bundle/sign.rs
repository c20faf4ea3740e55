//! Signing the manifest and SHA256SUMS in minisign's format, with a trusted comment
//! that binds the signature to the bundle id, name, sequence and expiry.

use std::path::Path;

use crate::bundle::manifest::Manifest;
use crate::bundle::names;
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

/// The four small signed files of a bundle, as bytes: the manifest and `SHA256SUMS`, each
/// with its signature. They are written beside the volumes and copied onto every disc.
pub struct Signed {
    pub manifest: Vec<u8>,
    pub manifest_sig: Vec<u8>,
    pub sums: Vec<u8>,
    pub sums_sig: Vec<u8>,
}

impl Signed {
    /// Sign `m` (validated) and its `SHA256SUMS` with `key`.
    pub fn new(m: &Manifest, key: &SecretKey) -> Signed {
        let manifest = m.to_bytes();
        let sums = sums_text(m).into_bytes();
        Signed {
            manifest_sig: sign(key, &manifest, m, &names::manifest_file(&m.name)).into_bytes(),
            sums_sig: sign(key, &sums, m, &names::sums_file(&m.name)).into_bytes(),
            manifest,
            sums,
        }
    }

    /// The signed files of `m` as written in `dir`: the signatures read back (bounded)
    /// and checked with `key`, for them to be copied elsewhere (disc images).
    pub fn load(dir: &Path, m: &Manifest, key: &PublicKey) -> Result<Signed> {
        let manifest = m.to_bytes();
        let sums = sums_text(m).into_bytes();
        let read = |file: &str, bytes: &[u8]| -> Result<Vec<u8>> {
            let path = dir.join(names::signature_file(file));
            let sig = crate::bundle::reader::read_signature(&path)?
                .ok_or_else(|| integrity(format!("{}: missing", path.display())))?;
            check_comment(&verify(key, bytes, &sig)?, m, file)?;
            Ok(sig)
        };
        Ok(Signed {
            manifest_sig: read(&names::manifest_file(&m.name), &manifest)?,
            sums_sig: read(&names::sums_file(&m.name), &sums)?,
            manifest,
            sums,
        })
    }

    /// Each file's name in a bundle called `name`, with its bytes; the manifest last, so
    /// a bundle is complete when its manifest is there.
    pub fn files(&self, name: &str) -> [(String, &[u8]); 4] {
        let (manifest, sums) = (names::manifest_file(name), names::sums_file(name));
        [
            (sums.clone(), &self.sums),
            (names::signature_file(&sums), &self.sums_sig),
            (names::signature_file(&manifest), &self.manifest_sig),
            (manifest, &self.manifest),
        ]
    }
}
