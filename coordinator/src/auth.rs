//! Request authentication: Ed25519 signatures over `proto::auth::signing_bytes`, and a nonce
//! book that refuses replayed or reordered calls.
//!
//! Nonces must strictly increase per participant. The book starts every participant at the
//! coordinator's start time (unix microseconds), so a call captured before a restart cannot be
//! replayed after it either.

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use proto::auth::{SignedContext, signing_bytes};

use crate::CoordinatorError;
use crate::store::ParticipantRecord;

/// Parses a 32-byte Ed25519 verifying key.
pub fn parse_key(bytes: &[u8]) -> Result<VerifyingKey, CoordinatorError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
        CoordinatorError::Invalid(format!("public key must be 32 bytes, got {}", bytes.len()))
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| CoordinatorError::Invalid("public key is not a valid Ed25519 point".into()))
}

/// Highest nonce seen per participant.
#[derive(Debug)]
pub struct NonceBook {
    floor: u64,
    last: HashMap<String, u64>,
}

impl NonceBook {
    /// Every nonce must exceed `floor` (the start time in unix microseconds).
    pub fn new(floor: u64) -> Self {
        Self {
            floor,
            last: HashMap::new(),
        }
    }

    fn floor_of(&self, participant: &str) -> u64 {
        self.last.get(participant).copied().unwrap_or(self.floor)
    }

    /// Verifies a signature of `participant` and consumes its nonce.
    pub fn verify(
        &mut self,
        participant: &ParticipantRecord,
        ctx: &SignedContext<'_>,
        signature: &[u8],
    ) -> Result<(), CoordinatorError> {
        if participant.revoked {
            return Err(CoordinatorError::Revoked(participant.id.clone()));
        }
        let key_bytes = hex::decode(&participant.public_key).map_err(|e| {
            CoordinatorError::Store(format!("stored key of {}: {e}", participant.id))
        })?;
        let key = parse_key(&key_bytes)?;
        let signature = Signature::from_slice(signature)
            .map_err(|_| CoordinatorError::BadSignature(participant.id.clone()))?;
        key.verify_strict(&signing_bytes(ctx), &signature)
            .map_err(|_| CoordinatorError::BadSignature(participant.id.clone()))?;
        let floor = self.floor_of(&participant.id);
        if ctx.nonce <= floor {
            return Err(CoordinatorError::Replay {
                participant: participant.id.clone(),
                nonce: ctx.nonce,
                floor,
            });
        }
        self.last.insert(participant.id.clone(), ctx.nonce);
        Ok(())
    }
}

/// Whether `given` is one of `tokens` (each compared in constant time, all of them always, so
/// timing does not say which one nearly matched); never for an empty `given`.
pub fn token_accepted(tokens: &[String], given: &str) -> bool {
    !given.is_empty()
        && tokens.iter().fold(false, |ok, t| {
            ok | crate::hub::constant_time_eq(t.as_bytes(), given.as_bytes())
        })
}

/// Whether `metadata` carries `authorization: Bearer <t>` for one of `tokens`.
pub fn bearer_accepted(metadata: &tonic::metadata::MetadataMap, tokens: &[String]) -> bool {
    let given = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    token_accepted(tokens, given)
}
