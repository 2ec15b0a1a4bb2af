//! Threshold decryption: partial decryptions with smudging noise, and their combination.
//!
//! For a decryption set `T` of exactly `t` members, member `j` turns its Shamir share into an
//! additive one, `w_j = [lambda_j^T * S_j]_0` (the constant coefficient of the Galois-ring
//! product; the `w_j` of `T` sum to `s` exactly), and returns `d_j = c1 * w_j + E_j` per block,
//! with Gaussian smudging `E_j` sized by the plan's noise budget, rounded to multiples of 2^24.
//! Anyone then computes `c0 + sum_j d_j = Delta*m + noise` and rounds. Fewer than `t` partials
//! are refused; and a sum of fewer than `t` of them is `Delta*m` plus `c1 * w` for a `w` that is
//! uniform and unknown, i.e. uniformly random.

use rayon::prelude::*;
use zeroize::Zeroize;

use super::HeError;
use super::ciphertext::{Ciphertext, round_words};
use super::committee::{Committee, MemberIndex};
use super::galois::lagrange_at_zero;
use super::keys::CollectivePublicKey;
use super::member::CommitteeMember;
use super::params::{AggregationPlan, PARTIAL_DROPPED_BITS, POLYNOMIAL_SIZE};
use super::random::NoiseSource;
use super::ring::Ring;
use super::wire::{FrameKind, FrameReader, FrameWriter, word_width};

/// The members asked to decrypt: exactly `threshold` distinct members, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptorSet(Vec<u16>);

impl DecryptorSet {
    /// Refuses sets smaller or larger than the threshold, repeated or off-roster members.
    pub fn new(plan: &AggregationPlan, members: &[MemberIndex]) -> Result<Self, HeError> {
        let need = usize::from(plan.threshold().0);
        let mut sorted: Vec<u16> = members.iter().map(|m| m.0).collect();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() < need {
            return Err(HeError::BelowThreshold {
                need,
                have: sorted.len(),
            });
        }
        if sorted.len() != members.len() || sorted.len() > need {
            return Err(HeError::InvalidPlan(
                "a decryption set names exactly `threshold` distinct members",
            ));
        }
        if let Some(&bad) = sorted.iter().find(|&&m| m == 0 || m > plan.committee().0) {
            return Err(HeError::BadMember {
                member: bad,
                reason: "not on the committee",
            });
        }
        Ok(Self(sorted))
    }

    /// The members, ascending.
    pub fn members(&self) -> impl Iterator<Item = MemberIndex> + '_ {
        self.0.iter().map(|&m| MemberIndex(m))
    }

    fn contains(&self, member: MemberIndex) -> bool {
        self.0.binary_search(&member.0).is_ok()
    }
}

/// A verified partial decryption. Only [`PartialDecryption::open`] makes one.
#[derive(Clone, PartialEq, Eq)]
pub struct PartialDecryption {
    pub(crate) key: [u8; 32],
    pub(crate) ciphertext: [u8; 32],
    pub(crate) member: MemberIndex,
    pub(crate) decryptors: DecryptorSet,
    pub(crate) words: Vec<u64>,
}

impl std::fmt::Debug for PartialDecryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialDecryption")
            .field("member", &self.member)
            .field("decryptors", &self.decryptors)
            .field("length", &self.words.len())
            .finish_non_exhaustive()
    }
}

fn body_len(threshold: usize, length: usize) -> usize {
    32 + 32 + 2 + 2 + 2 * threshold + 8 + length * word_width(PARTIAL_DROPPED_BITS)
}

impl PartialDecryption {
    #[must_use]
    pub fn member(&self) -> MemberIndex {
        self.member
    }

    /// Size of the signed wire frame for `length` slots and decryption sets of `threshold`.
    #[must_use]
    pub fn frame_len(threshold: usize, length: usize) -> usize {
        super::wire::frame_len(FrameKind::PartialDecryption, body_len(threshold, length))
    }

    /// Decodes a frame of `length` slots signed by the member it names.
    pub fn open(frame: &[u8], committee: &Committee, length: usize) -> Result<Self, HeError> {
        let threshold = usize::from(committee.plan().threshold().0);
        let mut reader = FrameReader::open_unverified(
            frame,
            FrameKind::PartialDecryption,
            body_len(threshold, length),
        )?;
        let key = reader.array()?;
        let ciphertext = reader.array()?;
        let member = reader.u16()?;
        reader.verify(frame, committee.verifying_key(member)?)?;
        if usize::from(reader.u16()?) != threshold {
            return Err(reader.malformed("decryption set size differs from the threshold"));
        }
        let mut members = Vec::with_capacity(threshold);
        for _ in 0..threshold {
            members.push(MemberIndex(reader.u16()?));
        }
        let decryptors = DecryptorSet::new(committee.plan(), &members)
            .map_err(|_| reader.malformed("invalid decryption set"))?;
        if !decryptors.contains(MemberIndex(member)) {
            return Err(HeError::BadMember {
                member,
                reason: "not in its own decryption set",
            });
        }
        if reader.u64()? != length as u64 {
            return Err(reader.malformed("declared length differs from the frame size"));
        }
        let words = reader.words(length, PARTIAL_DROPPED_BITS)?;
        reader.finish()?;
        Ok(Self {
            key,
            ciphertext,
            member: MemberIndex(member),
            decryptors,
            words,
        })
    }
}

impl CommitteeMember {
    /// This member's signed partial decryption of `aggregate` within `decryptors`.
    ///
    /// Refuses ciphertexts under another key or with more summands than the plan allows, sets
    /// this member is not in, and anything beyond the member's decryption budget.
    pub fn partial_decrypt(
        &mut self,
        key: &CollectivePublicKey,
        aggregate: &Ciphertext,
        decryptors: &DecryptorSet,
        noise: &mut NoiseSource,
    ) -> Result<Vec<u8>, HeError> {
        let plan = *self.committee.plan();
        if key.committee_digest() != self.committee.digest() || aggregate.key_id() != key.id() {
            return Err(HeError::WrongBinding {
                what: "ciphertext",
                binding: "collective key",
            });
        }
        if aggregate.summands() > plan.max_summands().0 {
            return Err(HeError::TooManySummands {
                summands: u64::from(aggregate.summands()),
                max: plan.max_summands().0,
            });
        }
        if !decryptors.contains(self.member) {
            return Err(HeError::NotADecryptor(self.member.0));
        }
        let requested = aggregate.len() as u64;
        let budget = plan.decryption_budget().0;
        if self.released.saturating_add(requested) > budget {
            return Err(HeError::DecryptionBudgetExhausted {
                member: self.member.0,
                used: self.released,
                requested,
                budget,
            });
        }
        let share = self
            .key_share
            .as_ref()
            .ok_or(HeError::KeyGenerationIncomplete(
                "fragments not yet accepted",
            ))?;
        let lambda = lagrange_at_zero(self.member.0, &decryptors.0).ok_or(HeError::InvalidPlan(
            "decryption set points are not invertible",
        ))?;
        let mut additive: Vec<u64> = share.0.iter().map(|s| lambda.mul(s).0[0]).collect();
        let ring = Ring::get();
        let mut additive_spectrum = ring.forward(&additive);
        additive.zeroize();
        self.released += requested;

        let smudging = plan.noise_budget().smudging_std;
        let mut words = vec![0u64; aggregate.len()];
        let sources = noise.split(words.len().div_ceil(POLYNOMIAL_SIZE));
        words
            .par_chunks_mut(POLYNOMIAL_SIZE)
            .zip(aggregate.masks().par_chunks(POLYNOMIAL_SIZE))
            .zip(sources)
            .for_each(|((out, mask), mut source)| {
                let spectrum = ring.forward(mask);
                if out.len() == POLYNOMIAL_SIZE {
                    ring.multiply_consuming(spectrum, &additive_spectrum, out);
                } else {
                    // The last block keeps only as many coefficients as it has slots.
                    let mut product = vec![0u64; POLYNOMIAL_SIZE];
                    ring.multiply_consuming(spectrum, &additive_spectrum, &mut product);
                    out.copy_from_slice(&product[..out.len()]);
                }
                source.add_gaussian(out, smudging);
                round_words(out, PARTIAL_DROPPED_BITS);
            });
        additive_spectrum.zeroize();

        let mut writer = FrameWriter::new(
            FrameKind::PartialDecryption,
            body_len(decryptors.0.len(), words.len()),
        );
        writer.put_bytes(&key.id());
        writer.put_bytes(&aggregate.digest());
        writer.put_u16(self.member.0);
        writer.put_u16(decryptors.0.len() as u16);
        decryptors.0.iter().for_each(|&m| writer.put_u16(m));
        writer.put_u64(words.len() as u64);
        writer.put_words(&words, PARTIAL_DROPPED_BITS);
        Ok(writer.sign(&self.identity))
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::super::combine::{combine, decode, sum_partials};
    use super::super::params::{CommitteeSize, SlotCount, SummandCount, Threshold};
    use super::super::simulation::{InProcessKeys, generate_keys_in_process};
    use super::*;
    use crate::secagg::FederationId;

    const LENGTH: usize = 3 * POLYNOMIAL_SIZE + 100;

    fn keys(summands: u32, committee: u16, threshold: u16) -> InProcessKeys {
        let plan = AggregationPlan::widest(
            SummandCount(summands),
            CommitteeSize(committee),
            Threshold(threshold),
            SlotCount(4 * LENGTH as u64),
        )
        .unwrap();
        let identities = (0..committee)
            .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
            .collect();
        let federation = FederationId::from_name("partial-tests");
        generate_keys_in_process(
            federation,
            1,
            plan,
            identities,
            &mut NoiseSource::from_seed(11),
        )
        .unwrap()
    }

    fn words(seed: u32, bits: u32) -> Vec<u32> {
        (0..LENGTH as u32)
            .map(|i| i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> (32 - bits))
            .collect()
    }

    /// Aggregate of `n` encryptions and the plaintext sum modulo 2^bits.
    fn aggregate(keys: &InProcessKeys, n: u32) -> (Ciphertext, Vec<u32>) {
        let bits = keys.key.plan().plaintext_bits().0;
        let mut noise = NoiseSource::from_seed(12);
        let mut sum = Ciphertext::zero(keys.key.id(), bits, LENGTH);
        let mut expected = vec![0u32; LENGTH];
        for k in 0..n {
            let plain = words(k, bits);
            let ciphertext = keys.key.encrypt(&plain, &mut noise).unwrap();
            sum.accumulate(&[&ciphertext]);
            expected
                .iter_mut()
                .zip(&plain)
                .for_each(|(e, p)| *e = e.wrapping_add(*p));
        }
        let mask = if bits == 32 {
            u32::MAX
        } else {
            (1 << bits) - 1
        };
        expected.iter_mut().for_each(|e| *e &= mask);
        (sum, expected)
    }

    fn partials(
        keys: &mut InProcessKeys,
        aggregate: &Ciphertext,
        set: &[u16],
    ) -> Vec<PartialDecryption> {
        let plan = *keys.key.plan();
        let decryptors = DecryptorSet::new(
            &plan,
            &set.iter().map(|&m| MemberIndex(m)).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut noise = NoiseSource::from_seed(13);
        set.iter()
            .map(|&m| {
                let member = &mut keys.members[usize::from(m) - 1];
                let frame = member
                    .partial_decrypt(&keys.key, aggregate, &decryptors, &mut noise)
                    .unwrap();
                PartialDecryption::open(&frame, &keys.committee, aggregate.len()).unwrap()
            })
            .collect()
    }

    fn signed(x: u64) -> f64 {
        x as i64 as f64
    }

    #[test]
    fn measured_noise_stays_under_the_model() {
        let (n, committee, threshold) = (20, 4, 2);
        let mut keys = keys(n, committee, threshold);
        let (aggregate, expected) = aggregate(&keys, n);
        let budget = keys.key.plan().noise_budget();
        let bits = keys.key.plan().plaintext_bits().0;
        let parts = partials(&mut keys, &aggregate, &[2, 4]);
        let phases = sum_partials(&aggregate, parts.iter().map(|p| p.words.as_slice()));
        let noise: Vec<f64> = phases
            .iter()
            .zip(&expected)
            .map(|(&x, &m)| signed(x.wrapping_sub(u64::from(m) << (64 - bits))))
            .collect();
        let max = noise.iter().fold(0f64, |a, &x| a.max(x.abs()));
        let std = (noise.iter().map(|x| x * x).sum::<f64>() / noise.len() as f64).sqrt();
        // Dominated by two smudging terms: std close to sqrt(2) * sigma, max far below the bound.
        let smudging = budget.smudging_std * 2f64.sqrt();
        assert!(
            (std / smudging - 1.0).abs() < 0.05,
            "std 2^{} vs 2^{}",
            std.log2(),
            smudging.log2()
        );
        assert!(max.log2() < budget.decryption_bound_log2 - 1.0);
        assert_eq!(decode(&phases, bits), expected);
    }

    #[test]
    fn ciphertext_noise_before_smudging_is_below_its_worst_case_std() {
        // Reconstruct s = sum of the additive shares of one set and decrypt without smudging.
        let n = 10;
        let keys = keys(n, 3, 2);
        let (aggregate, expected) = aggregate(&keys, n);
        let bits = keys.key.plan().plaintext_bits().0;
        let set = [1u16, 3];
        let mut secret = vec![0u64; POLYNOMIAL_SIZE];
        for &m in &set {
            let lambda = lagrange_at_zero(m, &set).unwrap();
            let share = keys.members[usize::from(m) - 1].key_share.as_ref().unwrap();
            secret
                .iter_mut()
                .zip(&share.0)
                .for_each(|(s, x)| *s = s.wrapping_add(lambda.mul(x).0[0]));
        }
        assert!(
            secret.iter().all(|&c| c <= 3),
            "s = sum of three binary polynomials"
        );
        let ring = Ring::get();
        let spectrum = ring.forward(&secret);
        let mut noise = Vec::new();
        for (block, mask) in aggregate.masks().chunks(POLYNOMIAL_SIZE).enumerate() {
            let mut product = vec![0u64; POLYNOMIAL_SIZE];
            ring.multiply(&ring.forward(mask), &spectrum, &mut product);
            let start = block * POLYNOMIAL_SIZE;
            for (i, &body) in aggregate.bodies()[start..]
                .iter()
                .take(POLYNOMIAL_SIZE)
                .enumerate()
            {
                let phase = body.wrapping_add(product[i]);
                noise.push(signed(
                    phase.wrapping_sub(u64::from(expected[start + i]) << (64 - bits)),
                ));
            }
        }
        let std = (noise.iter().map(|x| x * x).sum::<f64>() / noise.len() as f64).sqrt();
        let model = keys.key.plan().noise_budget().ciphertext_std_log2;
        assert!(
            std.log2() < model,
            "measured 2^{} vs worst-case 2^{model}",
            std.log2()
        );
        assert!(
            std.log2() > model - 3.0,
            "measured 2^{} far below 2^{model}",
            std.log2()
        );
    }

    #[test]
    fn fewer_than_threshold_partials_give_uniform_noise() {
        let mut keys = keys(5, 5, 3);
        let (aggregate, expected) = aggregate(&keys, 5);
        let bits = keys.key.plan().plaintext_bits().0;
        let parts = partials(&mut keys, &aggregate, &[1, 2, 5]);
        assert!(matches!(
            combine(&keys.key, &aggregate, &parts[..2]),
            Err(HeError::BelowThreshold { need: 3, have: 2 })
        ));
        assert_eq!(combine(&keys.key, &aggregate, &parts).unwrap(), expected);

        // Forcing the arithmetic with two of the three partials yields noise: chi-square of the
        // top 4 bits of the decoded words over 16 cells is that of a uniform distribution.
        let phases = sum_partials(&aggregate, parts[..2].iter().map(|p| p.words.as_slice()));
        let decoded = decode(&phases, bits);
        let matches = decoded
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a == b)
            .count();
        assert!(
            matches < 5,
            "{matches} of {LENGTH} slots decrypted correctly"
        );
        let mut cells = [0f64; 16];
        decoded
            .iter()
            .for_each(|&w| cells[(w >> (bits - 4)) as usize] += 1.0);
        let mean = LENGTH as f64 / 16.0;
        let chi_square: f64 = cells.iter().map(|c| (c - mean).powi(2) / mean).sum();
        // 15 degrees of freedom: P(chi2 > 37.7) = 0.001.
        assert!(chi_square < 37.7, "chi-square {chi_square}");
    }
}
