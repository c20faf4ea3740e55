//! Sigstore/cosign signatures, key-based and offline: the public keys ([`PublicKey`]), the
//! check of a cosign signature image against its subject ([`verify`]), with its Rekor
//! bundle ([`rekor`]), the tag names cosign attaches to an image ([`cosign_tags`]) and the
//! ClusterImagePolicy a cluster needs to check them ([`cluster_image_policy`]).
//!
//! A cosign signature image is an OCI manifest tagged `sha256-HEX.sig` beside its subject;
//! each layer is a simple-signing payload (JSON naming the subject's digest and docker
//! reference), its annotation `dev.cosignproject.cosign/signature` the base64 DER ECDSA
//! signature over the payload's exact bytes. The signature image's content is untrusted:
//! every check here reads it, none trusts it.

mod key;
mod policy;
mod rekor;

pub use key::PublicKey;
pub use policy::cluster_image_policy;

use base64::Engine as _;
use serde::Deserialize;

use crate::digest::Digest;
use crate::text::untrusted;

/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation holding a Rekor bundle (JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// What [`Verdict::Signed`]'s `key` says when no key was given: the signature is present
/// and well-formed for its subject, but nothing checked who made it.
pub const UNVERIFIED: &str = "unverified (no key given)";

/// What a cosign signature image says about its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signature verified: `key` is the key's [`PublicKey::id`], followed by the Rekor
    /// bundle's state when there is one (`; rekor entry N verified` or `; rekor bundle not
    /// checked (no Rekor key given)`), or [`UNVERIFIED`] when no key was given.
    Signed { key: String },
    /// No layer carries a signature.
    Unsigned,
    /// A signature is present and wrong; the text says why (untrusted parts escaped).
    Bad(String),
}

/// The cosign tag names of a subject: `sha256-HEX.sig`, `.att`, `.sbom`.
pub fn cosign_tags(subject: &Digest) -> [String; 3] {
    let base = format!("sha256-{}", subject.hex());
    [format!("{base}.sig"), format!("{base}.att"), format!("{base}.sbom")]
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// Check the signature manifest `manifest` (its bytes) with its layer blobs (`blob` reads
/// one by digest) for the subject `subject`. A signed layer holds when its payload matches
/// its descriptor's digest, the payload names `subject`, the signature verifies with one
/// of `keys` (when keys are given: a signature none of them verifies does not hold) and a
/// Rekor bundle, when present, verifies with `rekor` if given.
///
/// As in `cosign verify`, one layer that holds makes the subject `Signed`: a signature
/// image gathers the signatures of several signers, and another party's (or a broken)
/// signature beside a good one does not unsign the image. No layer holding is `Bad`,
/// naming every layer and why; no signature at all is `Unsigned`.
pub fn verify(
    manifest: &[u8],
    blob: &dyn Fn(&Digest) -> Option<Vec<u8>>,
    subject: &Digest,
    keys: &[PublicKey],
    rekor: Option<&PublicKey>,
) -> Verdict {
    let manifest: Manifest = match serde_json::from_slice(manifest) {
        Ok(m) => m,
        Err(e) => {
            return Verdict::Bad(format!(
                "the signature manifest is not an OCI manifest: {}",
                untrusted(&e.to_string())
            ))
        }
    };
    let mut failures = Vec::new();
    for (index, layer) in manifest.layers.iter().enumerate() {
        let Some(signature) = layer.annotations.get(SIGNATURE_ANNOTATION) else { continue };
        match verify_layer(layer, signature, blob, subject, keys, rekor) {
            Ok(key) => return Verdict::Signed { key },
            Err(why) => failures.push(format!("signature layer {index} ({}): {why}", untrusted(&layer.digest))),
        }
    }
    match failures.is_empty() {
        true => Verdict::Unsigned,
        false => Verdict::Bad(failures.join("; ")),
    }
}

/// One signed layer: the key description on success, why not otherwise.
fn verify_layer(
    layer: &Layer,
    signature: &str,
    blob: &dyn Fn(&Digest) -> Option<Vec<u8>>,
    subject: &Digest,
    keys: &[PublicKey],
    rekor: Option<&PublicKey>,
) -> Result<String, String> {
    let digest: Digest = layer.digest.parse().map_err(|e: String| untrusted(&e))?;
    let payload = blob(&digest).ok_or("the payload blob is missing")?;
    let actual = Digest::of(&payload);
    if actual != digest {
        return Err(format!("the payload's digest is {actual}, not the descriptor's"));
    }
    check_subject(&payload, subject)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| format!("the {SIGNATURE_ANNOTATION} annotation is not base64"))?;
    let signer = if keys.is_empty() {
        None
    } else {
        let ids = keys.iter().map(PublicKey::id).collect::<Vec<_>>().join(", ");
        let key = keys.iter().find(|k| k.verifies(&payload, &signature));
        Some(key.ok_or(format!("the signature does not verify with any given key ({ids})"))?)
    };
    let key = signer.map_or(UNVERIFIED.to_string(), PublicKey::id);
    match (layer.annotations.get(BUNDLE_ANNOTATION), rekor) {
        (None, _) => Ok(key),
        (Some(_), None) => Ok(format!("{key}; rekor bundle not checked (no Rekor key given)")),
        (Some(bundle), Some(rekor)) => {
            let index = rekor::check(bundle, rekor, &payload, &signature, signer)?;
            Ok(format!("{key}; rekor entry {index} verified"))
        }
    }
}

/// The simple-signing payload's `critical.image.docker-manifest-digest` must be `subject`.
fn check_subject(payload: &[u8], subject: &Digest) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| "the payload is not simple-signing JSON".to_string())?;
    let named = doc.pointer("/critical/image/docker-manifest-digest").and_then(|v| v.as_str());
    match named {
        Some(d) if d == subject.to_string() => Ok(()),
        Some(d) => Err(format!("the payload signs {}, not {subject}", untrusted(d))),
        None => Err("the payload has no critical.image.docker-manifest-digest".to_string()),
    }
}

#[cfg(test)]
mod tests;
