//! The ClusterImagePolicy that makes CRI-O check cosign signatures of mirrored images with
//! a public key: `config.openshift.io/v1` (GA in OpenShift 4.20; `v1alpha1` behind
//! TechPreview in 4.16–4.19), `spec.scopes` the repositories, `spec.policy.rootOfTrust`
//! of type `PublicKey` with `keyData` the base64 of the PEM, `signedIdentity` matching the
//! repository: the cluster checks the signature against the reference it pulls (the
//! source name, redirected to the mirror by an ImageDigestMirrorSet), which the payload's
//! docker reference names.

use base64::Engine as _;
use serde_json::{json, Value};

/// The API version and kind of the policy object.
pub const API_VERSION: &str = "config.openshift.io/v1";

/// A ClusterImagePolicy named `name` requiring, for every repository in `scopes`, a
/// cosign signature that verifies with the PEM public key `key_pem`.
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
                    "publicKey": { "keyData": base64::engine::general_purpose::STANDARD.encode(key_pem) },
                },
                "signedIdentity": { "matchPolicy": "MatchRepository" },
            },
        },
    })
}
