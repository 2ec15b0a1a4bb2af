//! Signed version manifests as a model's consumer sees them: the coordinator's registry signs
//! them (`coordinator::registry::VersionManifest`), participants verify them before they use
//! a fetched model. This module is the one definition of what the signature covers and how
//! weights are checked, so both sides agree by construction.
//!
//! The manifest id is the SHA-256 (hex) of `content_json`, the exact bytes that were signed;
//! the signature is Ed25519 over [`MANIFEST_DOMAIN`] `||` id. A consumer checks
//! [`SignedManifest::verify`] under a key it trusts, reads only the signed JSON
//! ([`SignedManifest::served`]), then checks the weight bytes ([`WeightsRef::verify`]).

use datasets::{Sector, Target};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain separation: a manifest signature can never be mistaken for a protocol signature.
pub const MANIFEST_DOMAIN: &[u8] = b"gridfed/model-manifest/v1\0";

/// Why a manifest or its weights were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest itself does not verify (altered content, wrong key, malformed fields).
    #[error("{0}")]
    BadManifest(String),
    /// The weights differ from what the manifest signs.
    #[error("{0}")]
    Weights(String),
}

fn bad(reason: impl Into<String>) -> ManifestError {
    ManifestError::BadManifest(reason.into())
}

/// The weights a version names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsRef {
    /// SHA-256 (hex) of the weight artifact: little-endian f32 in the flatten order of
    /// `ForecasterConfig::parameter_specs`.
    pub sha256: String,
    pub parameters: u64,
}

impl WeightsRef {
    /// Checks weight bytes (little-endian f32) against the signed digest and count.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), ManifestError> {
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != self.sha256 {
            return Err(ManifestError::Weights(format!(
                "weights sha256 {actual} differs from the signed manifest's {}",
                self.sha256
            )));
        }
        if bytes.len() as u64 != self.parameters.saturating_mul(4) {
            return Err(ManifestError::Weights(format!(
                "{} weight bytes for {} parameters",
                bytes.len(),
                self.parameters
            )));
        }
        Ok(())
    }
}

/// The signed envelope of a manifest: the content as signed, its id and the signature. Parses
/// from a full `VersionManifest` JSON too (its typed `content` copy is ignored: only the signed
/// bytes are trusted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// The canonical JSON of the manifest content, exactly as hashed and signed.
    pub content_json: String,
    /// SHA-256 (hex) of `content_json`.
    pub id: String,
    /// Ed25519 signature (hex) over `MANIFEST_DOMAIN || id`.
    pub signature: String,
    /// The signer's verifying key (hex); informational: verify against a key you trust.
    pub signer: String,
}

fn signed_bytes(id_hex: &str) -> Result<Vec<u8>, ManifestError> {
    let id = hex::decode(id_hex).map_err(|_| bad("id is not hex"))?;
    Ok([MANIFEST_DOMAIN, &id].concat())
}

impl SignedManifest {
    /// Hashes and signs `content_json`.
    pub fn sign(content_json: String, key: &SigningKey) -> Result<Self, ManifestError> {
        let id = hex::encode(Sha256::digest(content_json.as_bytes()));
        let signature = key.sign(&signed_bytes(&id)?);
        Ok(Self {
            content_json,
            signature: hex::encode(signature.to_bytes()),
            signer: hex::encode(key.verifying_key().to_bytes()),
            id,
        })
    }

    /// Checks that the id is the hash of the content and that `public_key` signed it.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), ManifestError> {
        if hex::encode(Sha256::digest(self.content_json.as_bytes())) != self.id {
            return Err(bad(
                "the id is not the hash of the content (content altered)",
            ));
        }
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| bad("the verifying key is not a valid Ed25519 point"))?;
        let bytes = hex::decode(&self.signature).map_err(|_| bad("the signature is not hex"))?;
        let signature =
            Signature::from_slice(&bytes).map_err(|_| bad("the signature is not 64 bytes"))?;
        key.verify(&signed_bytes(&self.id)?, &signature)
            .map_err(|_| bad("the signature does not verify under the coordinator's key"))
    }

    /// Verifies under `public_key`, then reads what a forecaster needs from the signed bytes.
    pub fn served(&self, public_key: &[u8; 32]) -> Result<ServedManifest, ManifestError> {
        self.verify(public_key)?;
        serde_json::from_str(&self.content_json)
            .map_err(|e| bad(format!("signed content is not a model manifest: {e}")))
    }
}

/// The model spec fields a consumer checks (the rest of the spec is the registry's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedModelSpec {
    pub target: Target,
    pub sector: Sector,
}

/// The part of a signed manifest's content that serving a version needs; other fields of the
/// registry's `ManifestContent` are ignored when parsing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServedManifest {
    pub model: String,
    pub version: u64,
    pub spec: ServedModelSpec,
    /// The complete `ForecasterConfig` (JSON), as participants trained it.
    pub forecaster_json: String,
    /// `serving::ServingSpec` (JSON).
    pub serving_spec_json: String,
    pub weights: WeightsRef,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(sha256: &str) -> String {
        serde_json::json!({
            "format": 1, "model": "res-load", "version": 2,
            "spec": {"name": "res-load", "target": "load", "sector": "residential"},
            "forecaster_json": "{}", "serving_spec_json": "{}",
            "weights": {"sha256": sha256, "parameters": 2},
            "metrics": {"weights_l2": 1.5}
        })
        .to_string()
    }

    #[test]
    fn signed_manifest_verifies_and_any_change_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let weights = [1.0f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>();
        let sha = hex::encode(Sha256::digest(&weights));
        let signed = SignedManifest::sign(content(&sha), &key).unwrap();
        let served = signed.served(&public).unwrap();
        assert_eq!((served.model.as_str(), served.version), ("res-load", 2));
        assert_eq!(served.spec.target, Target::Load);
        served.weights.verify(&weights).unwrap();

        let mut altered = signed.clone();
        altered.content_json = altered
            .content_json
            .replace("\"version\":2", "\"version\":3");
        assert!(
            altered
                .verify(&public)
                .unwrap_err()
                .to_string()
                .contains("altered")
        );
        let mut rehashed = altered.clone();
        rehashed.id = hex::encode(Sha256::digest(rehashed.content_json.as_bytes()));
        assert!(
            rehashed
                .verify(&public)
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert!(signed.verify(&other).is_err());

        let mut flipped = weights.clone();
        flipped[0] ^= 1;
        assert!(matches!(
            served.weights.verify(&flipped),
            Err(ManifestError::Weights(_))
        ));
        assert!(served.weights.verify(&weights[..4]).is_err());
    }
}
