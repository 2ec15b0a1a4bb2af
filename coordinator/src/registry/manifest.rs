//! Version manifests: what a model version is, where it came from, and the coordinator's
//! signature over it.
//!
//! The version id is the SHA-256 of the manifest content's canonical bytes (serde_json of
//! [`ManifestContent`]: fields in declaration order, maps sorted), kept verbatim in
//! `content_json`, so the id names exactly one content. The coordinator signs `MANIFEST_DOMAIN || id` with its Ed25519 key, the key
//! participants receive on `Join`; anyone holding it checks a manifest with
//! [`VersionManifest::verify`] and then the weights against `weights.sha256`
//! ([`VersionManifest::verify_weights`]) before using them.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ModelSpec, RegistryError};
use crate::config::Protection;

/// Domain separation: a manifest signature can never be mistaken for a protocol signature.
pub const MANIFEST_DOMAIN: &[u8] = b"gridfed/model-manifest/v1\0";
pub const MANIFEST_FORMAT: u32 = 1;

/// Where a version came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The round that produced it and the rounds completed so far (equal to the version).
    pub round: u64,
    pub rounds_completed: u64,
    pub participants: u64,
    pub protection: Protection,
    pub privacy: PrivacyAccounting,
    /// The version it was trained from (absent for the first).
    pub parent: Option<ParentRef>,
}

/// What bounded each participant's influence. `differential_privacy` stays `None` until DP
/// noise exists: a manifest never claims an epsilon that was not spent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyAccounting {
    pub clip: f32,
    pub max_weight: u32,
    pub differential_privacy: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub version: u64,
    /// Id of the parent's manifest; the initial weights (version 0) have none.
    pub id: Option<String>,
}

/// The weights a version names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsRef {
    /// SHA-256 (hex) of the weight artifact: little-endian f32 in the flatten order of
    /// `models::ForecasterConfig::parameter_specs`.
    pub sha256: String,
    pub parameters: u64,
}

/// A sector's federated evaluation of a version: its sites' holdout scores, aggregated under
/// the round's protection so that no single site's score is revealed (`models::holdout`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SectorEvaluation {
    /// The evaluation round.
    pub round: u64,
    pub protection: Protection,
    pub scores: models::FleetScores,
}

/// Everything the id and the signature cover.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestContent {
    pub format: u32,
    pub model: String,
    pub version: u64,
    pub spec: ModelSpec,
    /// The complete `models::ForecasterConfig` (JSON), as participants trained it.
    pub forecaster_json: String,
    pub lineage: Lineage,
    /// Named scores: sizes of the weights and of the update (measured by the coordinator) and
    /// the headline federated scores (`federated_nmae`, ...), for side-by-side comparison.
    pub metrics: BTreeMap<String, f64>,
    /// Federated evaluation by sector (the model's sector); empty when the version was not
    /// evaluated (its evaluation rounds failed).
    #[serde(default)]
    pub federated_evaluation: BTreeMap<String, SectorEvaluation>,
    pub created_unix_ms: u64,
    pub weights: WeightsRef,
    /// How the forecast service feeds the network (target, steps, feature layout), JSON.
    pub serving_spec_json: String,
}

impl ManifestContent {
    /// The bytes the id is the hash of.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, RegistryError> {
        Ok(serde_json::to_vec(self)?)
    }

    pub fn id(&self) -> Result<String, RegistryError> {
        Ok(hex::encode(Sha256::digest(self.canonical_bytes()?)))
    }
}

/// A signed, content-addressed manifest.
///
/// `content_json` is the exact byte string that was hashed and signed: verifiers hash it as
/// received instead of re-serializing `content` (float formatting and parsing need not agree
/// across JSON libraries), then check that `content` is what it says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionManifest {
    pub content: ManifestContent,
    /// The canonical JSON of `content`.
    pub content_json: String,
    /// SHA-256 (hex) of `content_json`.
    pub id: String,
    /// Ed25519 signature (hex) over `MANIFEST_DOMAIN || id`.
    pub signature: String,
    /// The signer's verifying key (hex); informational: verify against a key you trust.
    pub signer: String,
}

fn signed_bytes(id_hex: &str) -> Result<Vec<u8>, RegistryError> {
    let id = hex::decode(id_hex).map_err(|_| RegistryError::BadManifest("id is not hex".into()))?;
    Ok([MANIFEST_DOMAIN, &id].concat())
}

impl VersionManifest {
    /// Computes the id and signs it.
    pub fn sign(
        content: ManifestContent,
        key: &ed25519_dalek::SigningKey,
    ) -> Result<Self, RegistryError> {
        use ed25519_dalek::Signer;
        let content_json = String::from_utf8(content.canonical_bytes()?)
            .map_err(|e| RegistryError::BadManifest(e.to_string()))?;
        let id = hex::encode(Sha256::digest(content_json.as_bytes()));
        let signature = key.sign(&signed_bytes(&id)?);
        Ok(Self {
            content,
            content_json,
            signature: hex::encode(signature.to_bytes()),
            signer: hex::encode(key.verifying_key().to_bytes()),
            id,
        })
    }

    /// Checks that the id is the hash of the content and that `public_key` signed it.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), RegistryError> {
        let bad = |reason: &str| Err(RegistryError::BadManifest(reason.to_string()));
        if hex::encode(Sha256::digest(self.content_json.as_bytes())) != self.id {
            return bad("the id is not the hash of the content (content altered)");
        }
        match serde_json::from_str::<ManifestContent>(&self.content_json) {
            Ok(signed) if signed == self.content => {}
            _ => return bad("the content differs from the signed content"),
        }
        let Ok(key) = VerifyingKey::from_bytes(public_key) else {
            return bad("the verifying key is not a valid Ed25519 point");
        };
        let Ok(bytes) = hex::decode(&self.signature) else {
            return bad("the signature is not hex");
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return bad("the signature is not 64 bytes");
        };
        key.verify(&signed_bytes(&self.id)?, &signature)
            .or_else(|_| bad("the signature does not verify under the coordinator's key"))
    }

    /// Checks weight bytes against the manifest.
    pub fn verify_weights(&self, bytes: &[u8]) -> Result<(), RegistryError> {
        let c = &self.content;
        let tampered = |reason: String| RegistryError::Tampered {
            model: c.model.clone(),
            version: c.version,
            reason,
        };
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != c.weights.sha256 {
            return Err(tampered(format!(
                "weights sha256 {actual} differs from the signed manifest's {}",
                c.weights.sha256
            )));
        }
        if bytes.len() as u64 != c.weights.parameters * 4 {
            return Err(tampered(format!(
                "{} weight bytes for {} parameters",
                bytes.len(),
                c.weights.parameters
            )));
        }
        Ok(())
    }
}
