//! Full-precision weighted updates through the narrow plaintext space, in limbs.
//!
//! [`super::EncryptedCodec`] squeezes the fixed-point words into the plan's `bits` (about 19-21),
//! leaving `bits - 1 - log2(summands * max_weight)` bits per value: with FedAvg sample weights
//! up to 4096 that is 2-4 bits, too coarse to train with. [`LimbCodec`] keeps secure
//! aggregation's 32-bit words (the same codec, the same error bound as the masked mode) and
//! splits each into `limbs` limbs of `limb_bits = bits - ceil(log2(max_summands))` bits, one
//! slot each. A sum of up to `max_summands` limbs stays below `2^bits`, so it decrypts exactly,
//! and `sum_i limb_sum_i << (i * limb_bits)` modulo 2^32 is the sum of the words. The price is
//! `limbs` (2-3) times the slots.

use super::HeError;
use super::params::AggregationPlan;
use crate::fixed_point::{FixedPointCodec, WeightedMean};

/// Weighted 32-bit fixed-point words, limb by limb, for one encrypted plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimbCodec {
    codec: FixedPointCodec,
    limb_bits: u32,
    limbs: usize,
}

impl LimbCodec {
    /// A codec for values clipped to `[-clip, clip]`, weights in `1..=max_weight`, and up to
    /// the plan's maximum number of summands.
    pub fn new(plan: &AggregationPlan, clip: f32, max_weight: u32) -> Result<Self, HeError> {
        Self::with_headroom(plan, clip, max_weight, 0)
    }

    /// As [`Self::new`], with words that also hold noise of up to `headroom` units
    /// ([`FixedPointCodec::with_headroom`]); limbs carry any word, noisy or not.
    pub fn with_headroom(
        plan: &AggregationPlan,
        clip: f32,
        max_weight: u32,
        headroom: u32,
    ) -> Result<Self, HeError> {
        let summands = plan.max_summands().0;
        let codec = FixedPointCodec::with_headroom(clip, summands, max_weight, headroom)?;
        let carry = u32::BITS - (summands - 1).leading_zeros();
        let limb_bits = plan.plaintext_bits().0.saturating_sub(carry).min(32);
        if limb_bits == 0 {
            return Err(HeError::InvalidPlan(
                "no plaintext bits left for limbs after the summands' carries",
            ));
        }
        Ok(Self {
            codec,
            limb_bits,
            limbs: 32usize.div_ceil(limb_bits as usize),
        })
    }

    /// The fixed-point codec of the words (scale, clip, error bounds).
    #[must_use]
    pub fn codec(&self) -> &FixedPointCodec {
        &self.codec
    }

    /// Splits already encoded words (e.g. with noise added) into limb slots, limb-major.
    #[must_use]
    pub fn split_words(&self, words: &[u32]) -> Vec<u32> {
        let mask = low_mask(self.limb_bits);
        let mut slots = Vec::with_capacity(words.len() * self.limbs);
        for limb in 0..self.limbs {
            let shift = limb as u32 * self.limb_bits;
            slots.extend(words.iter().map(|w| (w >> shift) & mask));
        }
        slots
    }

    /// Slots of a vector of `values` values (plus the weight word).
    #[must_use]
    pub fn slots(&self, values: usize) -> usize {
        (values + 1) * self.limbs
    }

    /// Plaintext slots of `weight * values` and `weight`, limb-major.
    pub fn encode_weighted(&self, values: &[f32], weight: u32) -> Result<Vec<u32>, HeError> {
        Ok(self.split_words(&self.codec.encode_weighted(values, weight)?))
    }

    /// The weighted mean of `participants` updates from the decrypted slot sums.
    pub fn decode_weighted_mean(
        &self,
        sums: &[u32],
        participants: u32,
    ) -> Result<WeightedMean, HeError> {
        if sums.is_empty() || !sums.len().is_multiple_of(self.limbs) {
            return Err(HeError::LengthMismatch {
                expected: self.limbs as u64,
                actual: sums.len() as u64,
            });
        }
        let words = sums.len() / self.limbs;
        let mut total = vec![0u32; words];
        for (limb, part) in sums.chunks_exact(words).enumerate() {
            let shift = limb as u32 * self.limb_bits;
            for (word, &s) in total.iter_mut().zip(part) {
                *word = word.wrapping_add(s.wrapping_shl(shift));
            }
        }
        Ok(self.codec.decode_weighted_mean(&total, participants)?)
    }
}

fn low_mask(bits: u32) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::super::params::{CommitteeSize, SlotCount, SummandCount, Threshold};
    use super::*;

    #[test]
    fn limb_sums_decode_to_the_masked_codecs_weighted_mean() {
        let n = 10u32;
        let plan = AggregationPlan::widest(
            SummandCount(n),
            CommitteeSize(5),
            Threshold(3),
            SlotCount(2_000_000),
        )
        .unwrap();
        let limbs = LimbCodec::new(&plan, 1.0, 4096).unwrap();
        let bits = plan.plaintext_bits().0;
        let values: Vec<Vec<f32>> = (0..n)
            .map(|i| vec![1.0, -1.0, 0.25 * i as f32 / n as f32, -0.3])
            .collect();
        let weights: Vec<u32> = (0..n).map(|i| 4096 - 300 * i).collect();
        let mut sums = vec![0u32; limbs.slots(4)];
        for (v, &w) in values.iter().zip(&weights) {
            let slots = limbs.encode_weighted(v, w).unwrap();
            for (s, x) in sums.iter_mut().zip(slots) {
                assert!(x < 1 << limbs.limb_bits);
                *s += x;
                assert!(*s < 1 << bits, "a limb sum overflows the plaintext bits");
            }
        }
        let mean = limbs.decode_weighted_mean(&sums, n).unwrap();
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        for j in 0..4 {
            let exact: f64 = values
                .iter()
                .zip(&weights)
                .map(|(v, &w)| f64::from(v[j]) * f64::from(w))
                .sum::<f64>()
                / total;
            let err = (f64::from(mean.mean[j]) - exact).abs();
            assert!(err <= limbs.codec().mean_error_bound(), "{j}: {err}");
        }
        assert_eq!(mean.total_weight, total as u64);
    }
}
