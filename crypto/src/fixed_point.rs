//! Fixed-point encoding of f32 updates into 32-bit words that add modulo 2^32.
//!
//! Both protection modes aggregate integers modulo 2^32: masks cancel only in modular arithmetic
//! and RLWE plaintexts are integers. An update value `x` in the clipping range `[-clip, clip]` is
//! encoded as `q = round(x * scale)` stored in two's complement, where
//!
//! ```text
//! unit  = floor((2^31 - 1) / (max_participants * max_weight))   largest |q| of one value
//! scale = unit / clip
//! ```
//!
//! so the sum of up to `max_participants` encodings, each weighted by at most `max_weight`, stays
//! within `(-2^31, 2^31)` and decodes without wrapping. Out-of-range or non-finite values are an
//! error naming the index: a silent wrap would corrupt the whole aggregate.
//!
//! **Quantization bound.** Rounding costs at most `0.5 / scale` per value, so a decoded sum of `n`
//! updates is within `n * 0.5 / scale` of the exact sum, plus the f32 rounding of the result
//! (`n * clip * 2^-24`): see [`FixedPointCodec::sum_error_bound`]. The weighted mean is within
//! `0.5 / scale + clip * 2^-24` ([`FixedPointCodec::mean_error_bound`]). The precision is about
//! `31 - log2(max_participants * max_weight)` bits: cap sample counts (`max_weight`) accordingly.
//!
//! **Weighted aggregation (FedAvg).** [`FixedPointCodec::encode_weighted`] sends `w * x` plus the
//! count `w` in one extra slot. The aggregate then holds `sum(w_i x_i)` and `sum(w_i)`, which give
//! the sample-weighted mean while each count stays hidden like the values.

use crate::CryptoError;

/// Largest sum magnitude that decodes without wrapping: sums live in `(-2^31, 2^31)`.
const SUM_CAPACITY: u64 = i32::MAX as u64;

/// Encoder/decoder between f32 updates and words modulo 2^32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedPointCodec {
    /// Values must lie in `[-clip, clip]`; `clip` is finite and positive.
    clip: f32,
    /// Largest number of encodings that may be summed; `max_participants * max_weight <= 2^31-1`.
    max_participants: u32,
    /// Largest sample weight of [`Self::encode_weighted`]; 1 for plain sums.
    max_weight: u32,
    /// Largest `|q|` of one unweighted value: `floor((2^31-1) / (max_participants * max_weight
    /// + headroom))`.
    unit: u32,
    /// Extra room, in units, for noise added to the words (differential privacy, `crate::dp`).
    headroom: u32,
}

/// A decoded sample-weighted mean and the total weight behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedMean {
    pub mean: Vec<f32>,
    pub total_weight: u64,
}

impl FixedPointCodec {
    /// A codec for plain sums of up to `max_participants` updates clipped to `[-clip, clip]`.
    pub fn new(clip: f32, max_participants: u32) -> Result<Self, CryptoError> {
        Self::weighted(clip, max_participants, 1)
    }

    /// A codec for sample-weighted means with weights in `1..=max_weight`.
    pub fn weighted(
        clip: f32,
        max_participants: u32,
        max_weight: u32,
    ) -> Result<Self, CryptoError> {
        Self::with_headroom(clip, max_participants, max_weight, 0)
    }

    /// A codec whose sums also hold noise of up to `headroom` units in magnitude per value
    /// (see `crate::dp::headroom_units`): the precision given up for differential privacy.
    pub fn with_headroom(
        clip: f32,
        max_participants: u32,
        max_weight: u32,
        headroom: u32,
    ) -> Result<Self, CryptoError> {
        if !(clip.is_finite() && clip > 0.0) {
            return Err(CryptoError::InvalidCodec(
                "clip must be finite and positive",
            ));
        }
        if max_participants == 0 || max_weight == 0 {
            return Err(CryptoError::InvalidCodec(
                "participants and weight must be at least 1",
            ));
        }
        let capacity = u64::from(max_participants) * u64::from(max_weight) + u64::from(headroom);
        let unit = SUM_CAPACITY / capacity;
        if unit == 0 {
            return Err(CryptoError::InvalidCodec(
                "max_participants * max_weight exceeds 2^31 - 1: no precision left",
            ));
        }
        Ok(Self {
            clip,
            max_participants,
            max_weight,
            unit: u32::try_from(unit).map_err(|_| CryptoError::InvalidCodec("unit overflow"))?,
            headroom,
        })
    }

    /// Largest `|q|` of one unweighted value: the grid units of `clip`.
    #[must_use]
    pub fn unit(&self) -> u32 {
        self.unit
    }

    #[must_use]
    pub fn clip(&self) -> f32 {
        self.clip
    }

    #[must_use]
    pub fn max_participants(&self) -> u32 {
        self.max_participants
    }

    #[must_use]
    pub fn max_weight(&self) -> u32 {
        self.max_weight
    }

    /// Integer steps per unit of value.
    #[must_use]
    pub fn scale(&self) -> f64 {
        f64::from(self.unit) / f64::from(self.clip)
    }

    /// Encodes an update for a plain sum: one word per value.
    pub fn encode(&self, values: &[f32]) -> Result<Vec<u32>, CryptoError> {
        let mut words = Vec::with_capacity(values.len());
        self.encode_into(values, 1, &mut words)?;
        Ok(words)
    }

    /// Encodes `weight * values` followed by `weight` in one extra slot (length `values.len()+1`).
    pub fn encode_weighted(&self, values: &[f32], weight: u32) -> Result<Vec<u32>, CryptoError> {
        if weight == 0 || weight > self.max_weight {
            return Err(CryptoError::WeightOutOfRange {
                weight,
                max: self.max_weight,
            });
        }
        let mut words = Vec::with_capacity(values.len() + 1);
        self.encode_into(values, weight, &mut words)?;
        words.push(weight);
        Ok(words)
    }

    fn encode_into(
        &self,
        values: &[f32],
        weight: u32,
        out: &mut Vec<u32>,
    ) -> Result<(), CryptoError> {
        let scale = self.scale() * f64::from(weight);
        // |x| <= clip gives |x * scale| <= weight * unit; the clamp only absorbs f64 rounding.
        let limit = f64::from(weight) * f64::from(self.unit);
        for (index, &value) in values.iter().enumerate() {
            if value.is_nan() || value.abs() > self.clip {
                return Err(CryptoError::ValueOutOfRange {
                    index,
                    value,
                    clip: self.clip,
                });
            }
            let q = (f64::from(value) * scale).round().clamp(-limit, limit);
            // In range of i32 by construction (limit <= 2^31 - 1); two's complement mod 2^32.
            out.push((q as i64) as u32);
        }
        Ok(())
    }

    /// Decodes the modular sum of `participants` encodings back to the f32 sum.
    pub fn decode_sum(&self, sum: &[u32], participants: u32) -> Result<Vec<f32>, CryptoError> {
        let reach = self.reach(participants)?;
        let scale = self.scale();
        sum.iter()
            .enumerate()
            .map(|(index, &word)| {
                let q = word as i32;
                if u64::from(q.unsigned_abs()) > reach {
                    return Err(CryptoError::AggregateOutOfRange {
                        index,
                        participants,
                    });
                }
                Ok((f64::from(q) / scale) as f32)
            })
            .collect()
    }

    /// Decodes the modular sum of `participants` weighted encodings to the weighted mean.
    pub fn decode_weighted_mean(
        &self,
        sum: &[u32],
        participants: u32,
    ) -> Result<WeightedMean, CryptoError> {
        let Some((&total, values)) = sum.split_last() else {
            return Err(CryptoError::LengthMismatch {
                expected: 1,
                actual: 0,
            });
        };
        self.reach(participants)?;
        let total_weight = u64::from(total);
        let max_total = u64::from(participants) * u64::from(self.max_weight);
        if total_weight < u64::from(participants) || total_weight > max_total {
            return Err(CryptoError::AggregateOutOfRange {
                index: values.len(),
                participants,
            });
        }
        let sums = self.decode_sum(values, participants)?;
        let divisor = total_weight as f64;
        let mean = sums
            .iter()
            .map(|&s| (f64::from(s) / divisor) as f32)
            .collect();
        Ok(WeightedMean { mean, total_weight })
    }

    /// Largest |sum word| that `participants` in-range encodings can produce.
    fn reach(&self, participants: u32) -> Result<u64, CryptoError> {
        if participants == 0 || participants > self.max_participants {
            return Err(CryptoError::ParticipantCapacity {
                participants,
                max: self.max_participants,
            });
        }
        Ok(
            (u64::from(participants) * u64::from(self.max_weight) + u64::from(self.headroom))
                * u64::from(self.unit),
        )
    }

    /// Largest absolute error of each coordinate of [`Self::decode_sum`] over `participants`
    /// updates, against the exact sum of the (clipped) f32 inputs.
    #[must_use]
    pub fn sum_error_bound(&self, participants: u32) -> f64 {
        let n = f64::from(participants);
        n * 0.5 / self.scale() + n * f64::from(self.clip) * f64::from(f32::EPSILON) / 2.0
    }

    /// Largest absolute error of each coordinate of [`Self::decode_weighted_mean`].
    #[must_use]
    pub fn mean_error_bound(&self) -> f64 {
        0.5 / self.scale() + f64::from(self.clip) * f64::from(f32::EPSILON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_values_of_every_participant_do_not_wrap() {
        let codec = FixedPointCodec::new(2.5, 1000).unwrap();
        for extreme in [2.5_f32, -2.5] {
            let word = codec.encode(&[extreme]).unwrap()[0];
            let sum = (0..1000).fold(0u32, |acc, _| acc.wrapping_add(word));
            let decoded = codec.decode_sum(&[sum], 1000).unwrap()[0];
            let exact = f64::from(extreme) * 1000.0;
            assert!((f64::from(decoded) - exact).abs() <= codec.sum_error_bound(1000));
        }
    }

    #[test]
    fn out_of_range_and_non_finite_values_name_their_index() {
        let codec = FixedPointCodec::new(1.0, 10).unwrap();
        for bad in [1.0001_f32, -3.0, f32::NAN, f32::INFINITY] {
            match codec.encode(&[0.0, 0.5, bad]) {
                Err(CryptoError::ValueOutOfRange { index: 2, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn parameters_without_precision_are_rejected() {
        assert!(FixedPointCodec::new(0.0, 10).is_err());
        assert!(FixedPointCodec::new(f32::NAN, 10).is_err());
        assert!(FixedPointCodec::new(1.0, 0).is_err());
        assert!(FixedPointCodec::weighted(1.0, 1 << 16, 1 << 16).is_err());
        let codec = FixedPointCodec::weighted(1.0, 100, 1000).unwrap();
        assert_eq!(codec.scale(), f64::from(i32::MAX / 100_000));
    }

    #[test]
    fn sums_beyond_capacity_or_reach_are_errors() {
        let codec = FixedPointCodec::new(1.0, 10).unwrap();
        assert!(matches!(
            codec.decode_sum(&[0], 11),
            Err(CryptoError::ParticipantCapacity { .. })
        ));
        // One participant cannot produce a word of magnitude 2^30 when unit = (2^31-1)/10.
        assert!(matches!(
            codec.decode_sum(&[0, 1 << 30], 1),
            Err(CryptoError::AggregateOutOfRange {
                index: 1,
                participants: 1
            })
        ));
    }

    #[test]
    fn weighted_mean_weights_by_sample_count() {
        let codec = FixedPointCodec::weighted(1.0, 4, 1000).unwrap();
        let a = codec.encode_weighted(&[1.0, -0.5], 300).unwrap();
        let b = codec.encode_weighted(&[0.0, 0.5], 100).unwrap();
        assert_eq!(a.len(), 3);
        let sum: Vec<u32> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
        let mean = codec.decode_weighted_mean(&sum, 2).unwrap();
        assert_eq!(mean.total_weight, 400);
        let expected = [0.75_f64, -0.25];
        for (got, want) in mean.mean.iter().zip(expected) {
            assert!((f64::from(*got) - want).abs() <= codec.mean_error_bound());
        }
        assert!(matches!(
            codec.encode_weighted(&[0.0], 1001),
            Err(CryptoError::WeightOutOfRange {
                weight: 1001,
                max: 1000
            })
        ));
        // A total weight below one per participant is not reachable.
        assert!(codec.decode_weighted_mean(&[0, 1], 2).is_err());
    }
}
