//! The lattice parameters (fixed) and the aggregation plan (chosen per federation).
//!
//! The lattice side is tfhe-rs's compact public-key encryption parameter set
//! `V1_8_PARAM_PKE_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128` (the one behind
//! `PARAM_PKE_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128` in tfhe 1.8): one RLWE sample
//! `(a, b)` of dimension N = 2048 over Z_{2^64}[X]/(X^N + 1), binary secret, TUniform(17) noise for
//! the key, the mask and the body. tfhe-rs documents it at 128-bit security (and a 2^-128
//! failure probability for its own use); we use the same ring, key and noise distributions and
//! only change what is encrypted, so the same lattice estimate applies. The values are copied
//! here rather than imported because the constant lives behind tfhe's `shortint` feature, which
//! would double tfhe's build time for four numbers; `docs/he.md` records the correspondence.

use serde::{Deserialize, Serialize};

use super::HeError;
use super::noise::NoiseBudget;

/// Ring dimension N: coefficients (plaintext slots) per packed block.
pub const POLYNOMIAL_SIZE: usize = 2048;

/// log2 of the TUniform bound: noise coefficients are drawn from [-2^17, 2^17].
pub const NOISE_BOUND_LOG2: u32 = 17;

/// Identifier of (N = 2048, q = 2^64, binary secret, TUniform(17)) in every frame header.
pub const PARAMETER_SET_ID: u16 = 1;

/// Human-readable name of the parameter set, for reports.
pub const PARAMETER_SET_NAME: &str = "RLWE N=2048 q=2^64 binary secret TUniform(17) (tfhe V1_8_PARAM_PKE_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128)";

/// Ciphertext words are rounded to multiples of 2^16 when they are made: the low bits only carry
/// noise, and dropping them makes a ciphertext 12 bytes per slot instead of 16. The rounding
/// error is part of the noise budget.
pub const CIPHERTEXT_DROPPED_BITS: u32 = 16;

/// Partial decryptions are rounded to multiples of 2^24 (5 bytes per slot): their smudging noise
/// is about 2^38, so the rounding is noise among noise.
pub const PARTIAL_DROPPED_BITS: u32 = 24;

/// Largest committee: members are evaluation points of the Galois ring GR(2^64, 8), which has
/// 2^8 - 1 non-zero points whose differences are all invertible.
pub const MAX_COMMITTEE: u16 = 255;

/// Number of bits of the plaintext space: sums are computed modulo 2^bits (1..=32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PlaintextBits(pub u32);

/// Number of fresh ciphertexts summed into one aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SummandCount(pub u32);

/// Number of committee members holding a share of the decryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommitteeSize(pub u16);

/// Number of committee members whose partial decryptions are needed to decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Threshold(pub u16);

/// A number of plaintext slots (vector coefficients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SlotCount(pub u64);

/// What one collective key is for: agreed by the federation before key generation and bound into
/// every message of the session.
///
/// Invariant (upheld by [`AggregationPlan::new`], the only constructor): `1 <= threshold <=
/// committee <= 255`, `1 <= plaintext_bits <= 32`, at least one summand and one slot of budget,
/// and the decryption noise of an aggregate of `max_summands` ciphertexts, smudged for
/// `decryption_budget` slots, stays below half a plaintext step (see [`NoiseBudget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AggregationPlan {
    plaintext_bits: PlaintextBits,
    max_summands: SummandCount,
    committee: CommitteeSize,
    threshold: Threshold,
    decryption_budget: SlotCount,
}

impl AggregationPlan {
    /// A plan, or why it cannot work.
    ///
    /// `decryption_budget` is how many slots each member may partially decrypt under the key over
    /// its whole life (e.g. the vector length times the decryption attempts allowed): the
    /// smudging noise is sized for it, and members refuse to go beyond it.
    pub fn new(
        plaintext_bits: PlaintextBits,
        max_summands: SummandCount,
        committee: CommitteeSize,
        threshold: Threshold,
        decryption_budget: SlotCount,
    ) -> Result<Self, HeError> {
        if !(1..=32).contains(&plaintext_bits.0) {
            return Err(HeError::InvalidPlan("plaintext bits must be in 1..=32"));
        }
        if max_summands.0 == 0 {
            return Err(HeError::InvalidPlan("at least one summand"));
        }
        if committee.0 == 0 || committee.0 > MAX_COMMITTEE {
            return Err(HeError::InvalidPlan("committee size must be in 1..=255"));
        }
        if threshold.0 == 0 || threshold.0 > committee.0 {
            return Err(HeError::InvalidPlan(
                "threshold must be in 1..=committee size",
            ));
        }
        if decryption_budget.0 == 0 {
            return Err(HeError::InvalidPlan(
                "decryption budget must be at least one slot",
            ));
        }
        let plan = Self {
            plaintext_bits,
            max_summands,
            committee,
            threshold,
            decryption_budget,
        };
        let budget = plan.noise_budget();
        if !budget.fits() {
            return Err(HeError::NoiseBudget {
                bound_log2: budget.decryption_bound_log2,
                half_step_log2: budget.half_step_log2,
                max_bits: budget.max_plaintext_bits(),
            });
        }
        Ok(plan)
    }

    /// The plan with the most plaintext bits (at most 32) that the noise budget allows.
    pub fn widest(
        max_summands: SummandCount,
        committee: CommitteeSize,
        threshold: Threshold,
        decryption_budget: SlotCount,
    ) -> Result<Self, HeError> {
        let probe = Self::new(
            PlaintextBits(1),
            max_summands,
            committee,
            threshold,
            decryption_budget,
        )?;
        let bits = probe.noise_budget().max_plaintext_bits().min(32);
        Self::new(
            PlaintextBits(bits),
            max_summands,
            committee,
            threshold,
            decryption_budget,
        )
    }

    #[must_use]
    pub fn plaintext_bits(&self) -> PlaintextBits {
        self.plaintext_bits
    }

    #[must_use]
    pub fn max_summands(&self) -> SummandCount {
        self.max_summands
    }

    #[must_use]
    pub fn committee(&self) -> CommitteeSize {
        self.committee
    }

    #[must_use]
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    #[must_use]
    pub fn decryption_budget(&self) -> SlotCount {
        self.decryption_budget
    }

    /// The noise analysis of this plan (see [`NoiseBudget`]).
    #[must_use]
    pub fn noise_budget(&self) -> NoiseBudget {
        NoiseBudget::analyse(self)
    }
}
