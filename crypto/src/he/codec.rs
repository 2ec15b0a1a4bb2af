//! f32 updates in and out of the encrypted mode, through secure aggregation's fixed-point codec.
//!
//! [`FixedPointCodec`] spreads sums over 32-bit words; the encrypted mode's plaintext space is
//! only `bits` wide (the rest of the 64-bit modulus holds noise). The codec is therefore built as
//! if for `2^(32 - bits)` times more participants: every sum of up to `max_summands` updates then
//! stays within `(-2^(bits-1), 2^(bits-1))`, its low `bits` bits travel encrypted, and sign
//! extension restores the 32-bit word the codec decodes. Precision per value is about
//! `bits - 1 - log2(max_summands * max_weight)` bits; the codec's error bounds apply unchanged.

use super::HeError;
use super::ciphertext::Ciphertext;
use super::keys::CollectivePublicKey;
use super::params::AggregationPlan;
use super::random::NoiseSource;
use crate::fixed_point::{FixedPointCodec, WeightedMean};

/// The fixed-point codec of one encrypted plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncryptedCodec {
    codec: FixedPointCodec,
    /// Plaintext bits of the plan (1..=32).
    bits: u32,
}

impl EncryptedCodec {
    /// A codec for values clipped to `[-clip, clip]` and sample weights in `1..=max_weight`
    /// (1 for plain sums), for up to the plan's maximum number of summands.
    pub fn new(plan: &AggregationPlan, clip: f32, max_weight: u32) -> Result<Self, HeError> {
        let bits = plan.plaintext_bits().0;
        let inflated = u64::from(plan.max_summands().0) << (32 - bits);
        let inflated = u32::try_from(inflated)
            .map_err(|_| HeError::InvalidPlan("too many summands for the plaintext bits"))?;
        let codec = FixedPointCodec::weighted(clip, inflated, max_weight)?;
        Ok(Self { codec, bits })
    }

    /// The underlying codec (scale, clip, error bounds).
    #[must_use]
    pub fn codec(&self) -> &FixedPointCodec {
        &self.codec
    }

    /// Plaintext words of an update: `values`, or `weight * values` then `weight` when weighted.
    pub fn encode(&self, values: &[f32], weight: Option<u32>) -> Result<Vec<u32>, HeError> {
        let mut words = match weight {
            None => self.codec.encode(values)?,
            Some(weight) => self.codec.encode_weighted(values, weight)?,
        };
        if self.bits < 32 {
            let mask = (1u32 << self.bits) - 1;
            words.iter_mut().for_each(|w| *w &= mask);
        }
        Ok(words)
    }

    /// Encodes and encrypts one participant's update.
    pub fn encrypt_update(
        &self,
        key: &CollectivePublicKey,
        values: &[f32],
        weight: Option<u32>,
        noise: &mut NoiseSource,
    ) -> Result<Ciphertext, HeError> {
        if key.plan().plaintext_bits().0 != self.bits {
            return Err(HeError::InvalidPlan("codec built for another plan"));
        }
        key.encrypt(&self.encode(values, weight)?, noise)
    }

    /// The f32 sum of `participants` updates from the decrypted words.
    pub fn decode_sum(&self, sum: &[u32], participants: u32) -> Result<Vec<f32>, HeError> {
        Ok(self.codec.decode_sum(&self.widen(sum), participants)?)
    }

    /// The sample-weighted mean of `participants` weighted updates.
    pub fn decode_weighted_mean(
        &self,
        sum: &[u32],
        participants: u32,
    ) -> Result<WeightedMean, HeError> {
        Ok(self
            .codec
            .decode_weighted_mean(&self.widen(sum), participants)?)
    }

    /// Sign-extends `bits`-wide sums back to 32-bit two's complement words.
    fn widen(&self, sum: &[u32]) -> Vec<u32> {
        let unused = 32 - self.bits;
        sum.iter()
            .map(|&w| (((w << unused) as i32) >> unused) as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::params::{CommitteeSize, SlotCount, SummandCount, Threshold};
    use super::*;

    #[test]
    fn extreme_sums_fit_the_plaintext_bits_and_widen_back() {
        let plan = AggregationPlan::widest(
            SummandCount(50),
            CommitteeSize(5),
            Threshold(3),
            SlotCount(100_000),
        )
        .unwrap();
        let bits = plan.plaintext_bits().0;
        let codec = EncryptedCodec::new(&plan, 1.0, 1).unwrap();
        for extreme in [1.0_f32, -1.0] {
            let word = codec.encode(&[extreme], None).unwrap()[0];
            assert!(word < 1 << bits);
            let mask = (1u32 << bits) - 1;
            let sum = (0..50).fold(0u32, |acc, _| acc.wrapping_add(word) & mask);
            let decoded = codec.decode_sum(&[sum], 50).unwrap()[0];
            assert!(
                (f64::from(decoded) - 50.0 * f64::from(extreme)).abs()
                    <= codec.codec().sum_error_bound(50)
            );
        }
    }
}
