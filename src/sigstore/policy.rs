//! The ClusterImagePolicy that makes CRI-O check cosign signatures of mirrored images with
//! a public key, as openshift/api's `config/v1/types_cluster_image_policy.go` defines it:
//! `config.openshift.io/v1` (earlier releases served `v1alpha1` behind the
//! SigstoreImageVerification feature gate), `spec.scopes` the repositories,
//! `spec.policy.rootOfTrust` of type `PublicKey` with `keyData` the base64 of the PEM,
//! `signedIdentity` `MatchRepository`: the signature's docker reference must name the
//! repository the cluster asks for (the source name, which an ImageDigestMirrorSet
//! redirects to the mirror), whatever tag or digest.

use base64::Engine as _;
use serde_json::{json, Value};

/// The API version and kind of the policy object.
pub const API_VERSION: &str = "config.openshift.io/v1";

/// A ClusterImagePolicy named `name` requiring, for every repository in `scopes`, a
/// cosign signature that verifies with the PEM public key `key_pem` (a file
/// [`super::PublicKey::from_pem`] accepted: only its PEM block is kept, as the CRD's
/// validation wants keyData to start and end with the block's lines).
pub fn cluster_image_policy(name: &str, scopes: &[String], key_pem: &[u8]) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "ClusterImagePolicy",
        "metadata": { "name": name },
        "spec": {
            "scopes": scopes,
            "policy": {
                "rootOfTrust": {
                    "policyType": "PublicKey",
                    "publicKey": { "keyData": base64::engine::general_purpose::STANDARD.encode(pem_block(key_pem)) },
                },
                "signedIdentity": { "matchPolicy": "MatchRepository" },
            },
        },
    })
}

/// The `PUBLIC KEY` block of a PEM file and its final newline, without text around it.
fn pem_block(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    const END: &str = "-----END PUBLIC KEY-----";
    match (text.find("-----BEGIN PUBLIC KEY-----"), text.find(END)) {
        (Some(begin), Some(end)) if begin < end => format!("{}\n", &text[begin..end + END.len()]).into_bytes(),
        _ => pem.to_vec(),
    }
}
