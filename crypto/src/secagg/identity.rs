//! Long-term identities: the Ed25519 keys that sign every protocol message.

use std::collections::HashMap;
use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::ids::ParticipantId;
use super::messages::RosterEntry;
use crate::CryptoError;

/// A participant's enrolled identity and its Ed25519 signing key (zeroized on drop by dalek).
#[derive(Clone)]
pub struct ParticipantIdentity {
    id: ParticipantId,
    signing: SigningKey,
}

impl ParticipantIdentity {
    #[must_use]
    pub fn new(id: ParticipantId, signing: SigningKey) -> Self {
        Self { id, signing }
    }

    /// A fresh identity from a cryptographic random source.
    pub fn generate(id: ParticipantId, rng: &mut impl CryptoRng) -> Self {
        Self {
            id,
            signing: generate_signing_key(rng),
        }
    }

    #[must_use]
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// This identity as a roster entry of a round plan.
    #[must_use]
    pub fn roster_entry(&self) -> RosterEntry {
        RosterEntry {
            id: self.id,
            verifying_key: self.verifying_key().to_bytes(),
        }
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

impl fmt::Debug for ParticipantIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParticipantIdentity")
            .field("id", &self.id)
            .field("verifying_key", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// A fresh Ed25519 signing key (for the coordinator, or tests).
pub fn generate_signing_key(rng: &mut impl CryptoRng) -> SigningKey {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(bytes.as_mut());
    SigningKey::from_bytes(&bytes)
}

/// The verifying keys of a roster, refusing duplicates and keys that are not curve points.
pub(crate) fn roster_keys(
    roster: &[RosterEntry],
) -> Result<HashMap<ParticipantId, VerifyingKey>, CryptoError> {
    let mut keys = HashMap::with_capacity(roster.len());
    for entry in roster {
        let key = VerifyingKey::from_bytes(&entry.verifying_key).map_err(|_| {
            CryptoError::InvalidParams(format!("roster key of {} is not a valid point", entry.id))
        })?;
        if keys.insert(entry.id, key).is_some() {
            return Err(CryptoError::InvalidParams(format!(
                "{} appears twice in the roster",
                entry.id
            )));
        }
    }
    Ok(keys)
}
