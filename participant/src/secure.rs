//! The participant's masked-round state: the crypto crate's state machine fed with the
//! coordinator's messages, plus the fixed-point encoding of the clipped update.

use crypto::fixed_point::FixedPointCodec;
use crypto::secagg::{ParticipantId, ParticipantIdentity, ParticipantRound, SignedMessage};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::SeedableRng;

use crate::ParticipantError;
use crate::contribution::RoundDp;

fn crypto_err(e: crypto::CryptoError) -> ParticipantError {
    ParticipantError::Crypto(e.to_string())
}

/// Largest secure-aggregation message the participant decodes.
const MESSAGE_LIMIT: usize = proto::MAX_MESSAGE_BYTES;

/// One masked round in progress on this site.
pub struct SecureRound {
    state: ParticipantRound,
    codec: FixedPointCodec,
    dp: Option<RoundDp>,
}

impl SecureRound {
    /// Answers the coordinator's signed plan (`task.secagg_plan`); returns the round and the
    /// key advertisement. The task also fixes the encoding: clip, roster, weights and DP noise.
    pub fn join(
        signing: &SigningKey,
        secagg_id: u32,
        coordinator_key: &[u8],
        task: &proto::v1::TrainTask,
    ) -> Result<(Self, Vec<u8>), ParticipantError> {
        let (clip, roster, max_weight) = (task.clip, task.roster.len(), task.max_weight);
        let dp = crate::contribution::round_dp(task);
        let plan = task.secagg_plan.as_slice();
        let key: [u8; 32] = coordinator_key
            .try_into()
            .map_err(|_| ParticipantError::Protocol("coordinator key must be 32 bytes".into()))?;
        let coordinator = VerifyingKey::from_bytes(&key).map_err(|_| {
            ParticipantError::Protocol("coordinator key is not an Ed25519 point".into())
        })?;
        let plan = SignedMessage::from_bytes(plan, MESSAGE_LIMIT).map_err(crypto_err)?;
        let identity = ParticipantIdentity::new(ParticipantId(secagg_id), signing.clone());
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| ParticipantError::Crypto(format!("OS RNG: {e}")))?;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
        let (state, advert) =
            ParticipantRound::join(identity, coordinator, &plan, &mut rng).map_err(crypto_err)?;
        let roster = u32::try_from(roster)
            .map_err(|_| ParticipantError::Protocol("roster too large".into()))?;
        let headroom = dp.map_or(0, RoundDp::headroom);
        let codec = FixedPointCodec::with_headroom(clip, roster.max(1), max_weight, headroom)
            .map_err(crypto_err)?;
        Ok((Self { state, codec, dp }, advert.to_bytes()))
    }

    /// Handles a key directory, share relay or unmask request; returns the reply, if any.
    pub fn handle(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, ParticipantError> {
        let message = SignedMessage::from_bytes(message, MESSAGE_LIMIT).map_err(crypto_err)?;
        Ok(self
            .state
            .handle(&message)
            .map_err(crypto_err)?
            .map(|m| m.to_bytes()))
    }

    /// True once the shares are in and the update can be masked.
    pub fn ready_to_mask(&self) -> bool {
        matches!(self.state, ParticipantRound::ReadyToMask(_))
    }

    /// Encodes `update` weighted by `weight` and masks it; returns the masked input message.
    pub fn mask(&mut self, update: &[f32], weight: u32) -> Result<Vec<u8>, ParticipantError> {
        let mut words = self
            .codec
            .encode_weighted(update, weight)
            .map_err(crypto_err)?;
        if let Some(dp) = self.dp {
            dp.add_noise(&self.codec, &mut words, update.len())?;
        }
        Ok(self.state.mask(&words).map_err(crypto_err)?.to_bytes())
    }
}
