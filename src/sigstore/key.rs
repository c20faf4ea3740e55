//! Cosign public keys: PEM `PUBLIC KEY` (SubjectPublicKeyInfo), ECDSA P-256 only, the one
//! kind `cosign generate-key-pair` writes and Rekor's public instance uses.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest as _, Sha256};

use crate::error::{usage, Result};

/// A cosign (or Rekor) public key, ECDSA P-256; equal when the curve points are.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
    /// SHA-256 of the DER SubjectPublicKeyInfo: Rekor's log ID of its own key.
    spki_sha256: [u8; 32],
}

impl PublicKey {
    /// Parse a PEM `PUBLIC KEY`; `origin` (a file name) names the key in errors. Other
    /// curves, RSA and Ed25519 keys are refused.
    pub fn from_pem(bytes: &[u8], origin: &str) -> Result<PublicKey> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| usage(format!("{origin}: the sigstore key is not PEM text")))?;
        let der = pem_block(text, origin)?;
        let key = VerifyingKey::from_public_key_der(&der).map_err(|e| {
            usage(format!("{origin}: not an ECDSA P-256 public key ({e}); cosign keys are P-256 (RSA, Ed25519 and other curves are not supported)"))
        })?;
        Ok(PublicKey { key, spki_sha256: Sha256::digest(&der).into() })
    }

    /// A short fingerprint for reports: `SHA256:` and the first 16 hex digits of the
    /// SHA-256 of the DER public key.
    pub fn id(&self) -> String {
        format!("SHA256:{}", &crate::digest::hex(&self.spki_sha256)[..16])
    }

    /// The hex SHA-256 of the DER public key (a Rekor log's ID).
    pub(crate) fn log_id(&self) -> String {
        crate::digest::hex(&self.spki_sha256)
    }

    /// Whether `signature` (ASN.1 DER ECDSA) signs `message` with SHA-256.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        Signature::from_der(signature).is_ok_and(|sig| self.key.verify(message, &sig).is_ok())
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.key == other.key
    }
}

/// The DER inside the one `-----BEGIN PUBLIC KEY-----` block of `text` (text around it,
/// such as comments, is ignored).
fn pem_block(text: &str, origin: &str) -> Result<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let Some((_, rest)) = text.split_once(BEGIN) else {
        let found = text.lines().find(|l| l.starts_with("-----BEGIN")).map(crate::text::untrusted);
        return Err(usage(match found {
            Some(label) => format!("{origin}: expected a PEM PUBLIC KEY, found '{label}'"),
            None => format!("{origin}: no '{BEGIN}' block: not a PEM public key"),
        }));
    };
    let Some((body, _)) = rest.split_once(END) else {
        return Err(usage(format!("{origin}: the PEM PUBLIC KEY block has no '{END}' line")));
    };
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| usage(format!("{origin}: the PEM PUBLIC KEY block is not valid base64 ({e})")))
}
