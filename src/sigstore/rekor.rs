//! Rekor bundles (`dev.sigstore.cosign/bundle`), checked offline: the SignedEntryTimestamp
//! is the Rekor key's ECDSA signature over the RFC 8785 canonical JSON of the entry
//! `{body, integratedTime, logID, logIndex}`; the log ID must be the Rekor key's; the
//! entry's body (a `hashedrekord`, or an older `rekord`) must record this payload's
//! SHA-256, this signature and the key that verified it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::PublicKey;
use crate::text::untrusted;

#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "SignedEntryTimestamp")]
    set: String,
    #[serde(rename = "Payload")]
    entry: Entry,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    body: String,
    integrated_time: i64,
    #[serde(rename = "logID")]
    log_id: String,
    log_index: i64,
}

/// Check `bundle` (the annotation's JSON) for the layer's `payload` and `signature` made by
/// `signer` (when a key verified it); the entry's log index when it holds, why not otherwise.
pub(super) fn check(
    bundle: &str,
    rekor: &PublicKey,
    payload: &[u8],
    signature: &[u8],
    signer: Option<&PublicKey>,
) -> Result<i64, String> {
    let bundle: Bundle = serde_json::from_str(bundle)
        .map_err(|e| format!("the Rekor bundle is not valid: {}", untrusted(&e.to_string())))?;
    let entry = &bundle.entry;
    if entry.log_id != rekor.log_id() {
        return Err(format!(
            "the Rekor bundle is from log {}, not the given Rekor key's ({})",
            untrusted(&entry.log_id),
            rekor.id()
        ));
    }
    let set = STANDARD.decode(&bundle.set).map_err(|_| "the Rekor SignedEntryTimestamp is not base64")?;
    if !rekor.verifies(&canonical(entry), &set) {
        return Err(format!("the Rekor SignedEntryTimestamp does not verify with the Rekor key {}", rekor.id()));
    }
    check_body(&entry.body, payload, signature, signer)?;
    Ok(entry.log_index)
}

/// RFC 8785 canonical JSON of the entry: keys sorted, no whitespace, strings escaped by
/// serde_json (identical to RFC 8785 for the base64 and hex strings Rekor writes).
fn canonical(entry: &Entry) -> Vec<u8> {
    let string = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\"body\":{},\"integratedTime\":{},\"logID\":{},\"logIndex\":{}}}",
        string(&entry.body),
        entry.integrated_time,
        string(&entry.log_id),
        entry.log_index
    )
    .into_bytes()
}

/// The entry's body must record the payload's SHA-256, the layer's signature and `signer`.
fn check_body(body: &str, payload: &[u8], signature: &[u8], signer: Option<&PublicKey>) -> Result<(), String> {
    let body = STANDARD.decode(body).map_err(|_| "the Rekor entry body is not base64")?;
    let body: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| "the Rekor entry body is not JSON".to_string())?;
    let field = |path: &str| body.pointer(path).and_then(|v| v.as_str());
    let kind = field("/kind").unwrap_or_default();
    if kind != "hashedrekord" && kind != "rekord" {
        return Err(format!("the Rekor entry is a '{}', not a hashedrekord", untrusted(kind)));
    }
    let hash = (field("/spec/data/hash/algorithm"), field("/spec/data/hash/value"));
    if hash != (Some("sha256"), Some(crate::digest::hex(&Sha256::digest(payload)).as_str())) {
        return Err("the Rekor entry records another payload hash".to_string());
    }
    let recorded = field("/spec/signature/content").and_then(|s| STANDARD.decode(s).ok());
    if recorded.as_deref() != Some(signature) {
        return Err("the Rekor entry records another signature".to_string());
    }
    let Some(signer) = signer else { return Ok(()) };
    let pem = field("/spec/signature/publicKey/content").and_then(|s| STANDARD.decode(s).ok());
    let recorded = pem.and_then(|pem| PublicKey::from_pem(&pem, "the Rekor entry's public key").ok());
    match recorded {
        Some(key) if key == *signer => Ok(()),
        _ => Err(format!("the Rekor entry records another public key than {}", signer.id())),
    }
}
