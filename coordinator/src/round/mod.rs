//! One federated round as a sequence of types: a [`RoundPlan`] becomes a collecting round
//! ([`PlainCollecting`] or, masked, [`masked::KeyExchange`] then [`masked::MaskedCollecting`]),
//! which closes into [`masked::Unmasking`] (masked) and finally an [`Aggregated`] result.
//! Encrypted rounds ([`encrypted::EncryptedRound`]) generate a collective key, add ciphertexts
//! and ask a threshold of the committee to decrypt only the sum. Each
//! step consumes the previous one, so a late update has no state left to land in.
//!
//! Everything here is synchronous and clock-free: callers pass `now_ms`.

pub mod encrypted;
mod feeders;
pub mod masked;
mod plain;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use plain::PlainCollecting;

use crate::config::{FederationSpec, Protection};

/// Why a round refused a message or could not complete. Split by fault.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum RoundError {
    /// The message is about another round (late, early or forged).
    #[error("round {got} is not the current round {current}")]
    WrongRound { got: u64, current: u64 },
    /// The round is in another phase.
    #[error("round {round} is in phase `{phase}`, not accepting {what}")]
    WrongPhase {
        round: u64,
        phase: &'static str,
        what: &'static str,
    },
    #[error("participant `{0}` was not selected for this round")]
    NotSelected(String),
    #[error("participant `{0}` already submitted in this phase")]
    AlreadySubmitted(String),
    /// The participant's data is malformed (peer misbehaved).
    #[error("malformed update from `{participant}`: {reason}")]
    Malformed { participant: String, reason: String },
    /// Not enough participants remain.
    #[error("round {round} has {have} contributions, needs {need}")]
    TooFew {
        round: u64,
        have: usize,
        need: usize,
    },
    /// The secure-aggregation protocol failed (crypto crate).
    #[error("secure aggregation: {0}")]
    SecAgg(String),
}

/// Global weights a round starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsRef {
    pub version: u64,
    pub length: u64,
    pub sha256: [u8; 32],
}

/// Absolute phase deadlines (unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    pub keys_unix_ms: u64,
    pub upload_unix_ms: u64,
    pub unmask_unix_ms: u64,
}

/// What the participants of a round send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundPurpose {
    /// Train from `global` and send the clipped update (FedAvg).
    Train,
    /// Score `global` on the local holdout and send `models::HoldoutScores` (federated
    /// evaluation); nothing is trained.
    Evaluate,
}

/// A round as decided at selection: who, from which weights, under which rules.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundPlan {
    pub purpose: RoundPurpose,
    pub federation: String,
    pub round: u64,
    /// Selected participants, sorted.
    pub selected: Vec<String>,
    /// Contributions wanted; collecting closes early once this many arrived.
    pub target: usize,
    pub min_participants: usize,
    pub global: WeightsRef,
    pub protection: Protection,
    pub deadlines: Deadlines,
    /// Public round seed (neighbour graph).
    pub seed: [u8; 32],
    pub started_unix_ms: u64,
    pub spec: FederationSpec,
}

impl RoundPlan {
    /// Values each participant sends (before the weight slot protected modes add).
    pub fn vector_len(&self) -> u64 {
        match self.purpose {
            RoundPurpose::Train => self.global.length,
            RoundPurpose::Evaluate => models::holdout::SCORE_SLOTS as u64,
        }
    }

    /// Every sent value lies in `[-clip, clip]` (in a DP round the L2 bound, which bounds
    /// every coordinate too).
    pub fn clip(&self) -> f32 {
        match (self.purpose, self.dp()) {
            (RoundPurpose::Train, Some(dp)) => dp.clip_l2,
            (RoundPurpose::Train, None) => self.spec.clip,
            (RoundPurpose::Evaluate, _) => models::holdout::SCORE_CLIP,
        }
    }

    /// Largest weight (training samples, or holdout windows) a contribution may claim; 1 in a
    /// DP round, where every site counts the same.
    pub fn max_weight(&self) -> u32 {
        match (self.purpose, self.dp()) {
            (RoundPurpose::Train, Some(_)) => 1,
            (RoundPurpose::Train, None) => self.spec.max_weight,
            (RoundPurpose::Evaluate, _) => models::holdout::MAX_SCORE_WEIGHT,
        }
    }

    /// The differential privacy of a training round of a DP federation.
    pub fn dp(&self) -> Option<&crate::config::DpSpec> {
        match self.purpose {
            RoundPurpose::Train => self.spec.dp.as_ref(),
            RoundPurpose::Evaluate => None,
        }
    }

    /// Units of headroom the fixed-point sums keep for the DP noise (0 without DP).
    pub fn noise_headroom(&self) -> u32 {
        self.dp()
            .map_or(0, |d| crypto::dp::headroom_units(d.noise_multiplier))
    }

    pub fn is_selected(&self, participant: &str) -> bool {
        self.selected
            .binary_search_by(|p| p.as_str().cmp(participant))
            .is_ok()
    }

    pub(crate) fn check(&self, round: u64, participant: &str) -> Result<(), RoundError> {
        if round != self.round {
            return Err(RoundError::WrongRound {
                got: round,
                current: self.round,
            });
        }
        if !self.is_selected(participant) {
            return Err(RoundError::NotSelected(participant.to_string()));
        }
        Ok(())
    }
}

/// The outcome of a completed round: the FedAvg step to apply to the global weights, or (an
/// evaluation round) the fleet's mean scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregated {
    pub plan: RoundPlan,
    /// Weighted mean of the participants' vectors: updates (local - global) by sample count,
    /// or holdout scores by window count.
    pub mean_update: Vec<f32>,
    /// Sum of the contributions' weights.
    pub total_weight: u64,
    /// Number of contributions in the mean.
    pub participants: usize,
}

/// What a participant should do next (domain form of `proto::v1::RoundTask`).
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Idle {
        reason: &'static str,
    },
    /// Train from the plan's global weights; masked rounds add the signed secure-aggregation
    /// plan to answer with key advertisements, encrypted rounds the committee roster.
    Train {
        plan: Box<RoundPlan>,
        secagg_plan: Option<Arc<Vec<u8>>>,
    },
    /// A secure-aggregation step: the coordinator's broadcast for `phase`.
    Step {
        round: u64,
        phase: masked::StepPhase,
        payload: Arc<Vec<u8>>,
    },
    Done {
        final_weights: WeightsRef,
    },
}
