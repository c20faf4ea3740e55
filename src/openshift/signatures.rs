//! Release GPG signatures: fetching them from a signature store by the release's digest
//! (mirror.openshift.com's layout, `BASE/sha256=HEX/signature-N`, N from 1 until a 404)
//! and checking them with OpenPGP public keys (`--release-key`).
//!
//! A signature is an OpenPGP signed message (not detached; gpg may compress it) whose
//! literal data is an "atomic container signature" JSON, as containers/image writes it:
//! `{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":
//! "sha256:…"},"type":"atomic container signature"},"optional":{…}}`. It holds for a
//! release when it verifies with one of the keys and names the release's digest.

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, Message, SignedPublicKey};

use crate::client::Client;
use crate::digest::Digest;
use crate::error::{integrity, usage, IoContext, Result};
use crate::text::untrusted;

/// Where Red Hat publishes the signatures of OpenShift releases.
pub const DEFAULT_STORE: &str = "https://mirror.openshift.com/pub/openshift-v4/signatures/openshift/release";

/// The most signatures read for one release: a bound against a store that never answers
/// 404 (oc-mirror reads signature-1 only; Red Hat publishes one or two).
pub const MAX_SIGNATURES: usize = 16;

/// The largest signature accepted from a store (real ones are under 1 KiB).
pub const MAX_SIGNATURE_SIZE: u64 = 64 << 10;

/// The `critical.type` of an atomic container signature.
const SIGNATURE_TYPE: &str = "atomic container signature";

/// The OpenPGP public keys signatures are checked with, each with the file it came from.
pub struct ReleaseKeys {
    keys: Vec<(PathBuf, SignedPublicKey)>,
}

impl ReleaseKeys {
    /// Read every key of every file (armored or binary; a file may hold several keys).
    pub fn load(paths: &[PathBuf]) -> Result<ReleaseKeys> {
        let mut keys = Vec::new();
        for path in paths {
            let bytes = std::fs::read(path).at(path)?;
            let bad = |e: pgp::errors::Error| {
                usage(format!("--release-key {}: not an OpenPGP public key: {e}", path.display()))
            };
            let read: Vec<SignedPublicKey> = if is_armored(&bytes) {
                SignedPublicKey::from_armor_many(bytes.as_slice()).map_err(bad)?.0.collect::<pgp::errors::Result<_>>()
            } else {
                SignedPublicKey::from_bytes_many(bytes.as_slice()).collect::<pgp::errors::Result<_>>()
            }
            .map_err(bad)?;
            if read.is_empty() {
                return Err(usage(format!("--release-key {}: holds no OpenPGP public key", path.display())));
            }
            for key in read {
                key.verify().map_err(|e| {
                    usage(format!("--release-key {}: a key's self-signatures do not verify: {e}", path.display()))
                })?;
                keys.push((path.clone(), key));
            }
        }
        Ok(ReleaseKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key file whose primary key or a subkey made the signature of `message`.
    fn signer(&self, message: &Message) -> Option<&Path> {
        self.keys.iter().find_map(|(path, key)| {
            let primary = message.verify(&key.primary_key).is_ok();
            (primary || key.public_subkeys.iter().any(|sub| message.verify(&sub.key).is_ok())).then_some(path.as_path())
        })
    }
}

/// The URL of a release's `n`th signature (from 1) in the store at `base`.
pub fn signature_url(base: &str, digest: &Digest, n: usize) -> String {
    format!("{}/sha256={}/signature-{n}", base.trim_end_matches('/'), digest.hex())
}

/// A release's signatures in the store at `base`, with their URLs: signature-1, -2, …
/// until the store answers 404 (or [`MAX_SIGNATURES`]). `release` names it in errors.
pub fn fetch(client: &Client, base: &str, release: &str, digest: &Digest) -> Result<Vec<(String, Vec<u8>)>> {
    let mut found = Vec::new();
    for n in 1..=MAX_SIGNATURES {
        let url = signature_url(base, digest, n);
        let what = format!("release {release}: fetching signature {n}");
        match client.get_url(&url, "*/*", &what, MAX_SIGNATURE_SIZE)? {
            Some(bytes) => found.push((url, bytes)),
            None => break,
        }
    }
    Ok(found)
}

/// Check one signature (`what`: its URL or file) of the release `release`: it must name
/// `digest` and, when `keys` has any, verify with one of them. Returns the key file
/// that verified it, `None` without keys. A bad signature is an integrity error.
pub fn check<'k>(
    keys: &'k ReleaseKeys,
    bytes: &[u8],
    digest: &Digest,
    release: &str,
    what: &str,
) -> Result<Option<&'k Path>> {
    let bad = |why: String| integrity(format!("release {release}: signature {what}: {why}"));
    let message =
        if is_armored(bytes) { Message::from_armor_single(bytes).map(|(m, _)| m) } else { Message::from_bytes(bytes) }
            .map_err(|e| bad(format!("not an OpenPGP message: {}", untrusted(&e.to_string()))))?;
    let signer = if keys.is_empty() {
        None
    } else {
        Some(keys.signer(&message).ok_or_else(|| bad("does not verify with any --release-key".into()))?)
    };
    let content = message.get_content().ok().flatten().ok_or_else(|| bad("holds no signed literal data".into()))?;
    let signed = signed_digest(&content).map_err(bad)?;
    if signed != format!("sha256:{}", digest.hex()) {
        return Err(bad(format!("signs {}, not the release's sha256:{}", untrusted(&signed), digest.hex())));
    }
    Ok(signer)
}

/// The `docker-manifest-digest` an atomic container signature claims.
fn signed_digest(content: &[u8]) -> std::result::Result<String, String> {
    let doc: serde_json::Value = serde_json::from_slice(content)
        .map_err(|e| format!("its content is not an atomic container signature: {e}"))?;
    let critical = &doc["critical"];
    if critical["type"] != SIGNATURE_TYPE {
        return Err(format!("its critical.type is not \"{SIGNATURE_TYPE}\""));
    }
    critical["image"]["docker-manifest-digest"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "it names no critical.image.docker-manifest-digest".to_string())
}

fn is_armored(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().starts_with(b"-----BEGIN PGP")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"release")
    }

    #[test]
    fn urls_follow_the_mirror_layout() {
        let url = signature_url("https://example.com/release/", &digest(), 2);
        assert_eq!(url, format!("https://example.com/release/sha256={}/signature-2", digest().hex()));
    }

    #[test]
    fn the_signed_digest_is_read_from_the_critical_section() {
        let doc = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"quay.io/x/y"}},"image":{{"docker-manifest-digest":"sha256:{}"}},"type":"atomic container signature"}},"optional":{{}}}}"#,
            digest().hex()
        );
        assert_eq!(signed_digest(doc.as_bytes()).unwrap(), format!("sha256:{}", digest().hex()));
        assert!(
            signed_digest(br#"{"critical":{"type":"other","image":{"docker-manifest-digest":"sha256:00"}}}"#).is_err()
        );
        assert!(signed_digest(br#"{"critical":{"type":"atomic container signature"}}"#).is_err());
        assert!(signed_digest(b"not json").is_err());
    }

    #[test]
    fn garbage_is_an_integrity_error_naming_release_and_signature() {
        let keys = ReleaseKeys { keys: Vec::new() };
        let err = check(&keys, b"garbage", &digest(), "4.16.3", "signature-1").unwrap_err();
        assert_eq!(err.status(), crate::error::Status::Integrity);
        assert!(err.to_string().contains("release 4.16.3: signature signature-1"), "{err}");
    }
}
