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

use models::manifest::{ManifestError, SignedManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ModelSpec, RegistryError};
use crate::config::Protection;

// The signature and weight rules live in `models::manifest`, shared with participants.
pub use models::manifest::{MANIFEST_DOMAIN, WeightsRef};
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

/// What bounded each participant's influence. `differential_privacy` is `None` for versions
/// trained without DP noise: a manifest never claims an epsilon that was not spent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyAccounting {
    pub clip: f32,
    pub max_weight: u32,
    pub differential_privacy: Option<crate::store::DpAccounting>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub version: u64,
    /// Id of the parent's manifest; the initial weights (version 0) have none.
    pub id: Option<String>,
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

impl VersionManifest {
    /// Computes the id and signs it.
    pub fn sign(
        content: ManifestContent,
        key: &ed25519_dalek::SigningKey,
    ) -> Result<Self, RegistryError> {
        let content_json = String::from_utf8(content.canonical_bytes()?)
            .map_err(|e| RegistryError::BadManifest(e.to_string()))?;
        let signed = SignedManifest::sign(content_json, key).map_err(bad_manifest)?;
        Ok(Self {
            content,
            content_json: signed.content_json,
            id: signed.id,
            signature: signed.signature,
            signer: signed.signer,
        })
    }

    /// The signed envelope (what participants receive and verify).
    pub fn signed(&self) -> SignedManifest {
        SignedManifest {
            content_json: self.content_json.clone(),
            id: self.id.clone(),
            signature: self.signature.clone(),
            signer: self.signer.clone(),
        }
    }

    /// Checks that the id is the hash of the content, that `public_key` signed it, and that
    /// `content` is what was signed.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), RegistryError> {
        self.signed().verify(public_key).map_err(bad_manifest)?;
        match serde_json::from_str::<ManifestContent>(&self.content_json) {
            Ok(signed) if signed == self.content => Ok(()),
            _ => Err(RegistryError::BadManifest(
                "the content differs from the signed content".into(),
            )),
        }
    }

    /// Checks weight bytes against the manifest.
    pub fn verify_weights(&self, bytes: &[u8]) -> Result<(), RegistryError> {
        self.content
            .weights
            .verify(bytes)
            .map_err(|e| RegistryError::Tampered {
                model: self.content.model.clone(),
                version: self.content.version,
                reason: e.to_string(),
            })
    }
}

fn bad_manifest(e: ManifestError) -> RegistryError {
    RegistryError::BadManifest(e.to_string())
}
