//! Combination of partial decryptions into the plaintext sum.
//!
//! `c0 + sum_j d_j = Delta*m + noise` slot by slot, then rounding to the nearest multiple of
//! Delta. Needs no secret, so the coordinator may run it; it refuses anything but exactly one
//! verified partial from every member of one decryption set, all bound to this aggregate.

use rayon::prelude::*;

use super::HeError;
use super::ciphertext::Ciphertext;
use super::keys::CollectivePublicKey;
use super::partial::PartialDecryption;

/// Combines exactly one partial decryption from every member of one decryption set into the
/// plaintext sum (modulo 2^bits). Needs no secret: the coordinator may run it.
pub fn combine(
    key: &CollectivePublicKey,
    aggregate: &Ciphertext,
    partials: &[PartialDecryption],
) -> Result<Vec<u32>, HeError> {
    let need = usize::from(key.plan().threshold().0);
    let Some(first) = partials.first() else {
        return Err(HeError::BelowThreshold { need, have: 0 });
    };
    if aggregate.key_id() != key.id() {
        return Err(HeError::WrongBinding {
            what: "ciphertext",
            binding: "collective key",
        });
    }
    let digest = aggregate.digest();
    let mut members: Vec<u16> = Vec::with_capacity(partials.len());
    for partial in partials {
        if partial.key != key.id() || partial.ciphertext != digest {
            return Err(HeError::WrongBinding {
                what: "partial decryption",
                binding: "ciphertext",
            });
        }
        if partial.decryptors != first.decryptors {
            return Err(HeError::WrongBinding {
                what: "partial decryption",
                binding: "decryption set",
            });
        }
        if partial.words.len() != aggregate.len() {
            return Err(HeError::LengthMismatch {
                expected: aggregate.len() as u64,
                actual: partial.words.len() as u64,
            });
        }
        if members.contains(&partial.member.0) {
            return Err(HeError::BadMember {
                member: partial.member.0,
                reason: "two partial decryptions",
            });
        }
        members.push(partial.member.0);
    }
    if members.len() < need {
        return Err(HeError::BelowThreshold {
            need,
            have: members.len(),
        });
    }
    let bits = aggregate.bits();
    let shift = 64 - bits;
    let half = 1u64 << (shift - 1);
    // One pass: c0 + sum d_j, rounded, chunk by chunk on both cores.
    let mut sum = vec![0u32; aggregate.len()];
    sum.par_chunks_mut(4096)
        .enumerate()
        .for_each(|(chunk, out)| {
            let start = chunk * 4096;
            let bodies = &aggregate.bodies()[start..start + out.len()];
            for (i, (slot, &body)) in out.iter_mut().zip(bodies).enumerate() {
                let phase = partials
                    .iter()
                    .fold(body, |acc, p| acc.wrapping_add(p.words[start + i]));
                *slot = (phase.wrapping_add(half) >> shift) as u32;
            }
        });
    Ok(sum)
}

/// `c0 + sum d_j`, slot by slot (tests force the arithmetic with too few partials).
#[cfg(test)]
pub(crate) fn sum_partials<'a>(
    aggregate: &Ciphertext,
    partials: impl Iterator<Item = &'a [u64]>,
) -> Vec<u64> {
    let mut sum = aggregate.bodies().to_vec();
    for words in partials {
        sum.par_iter_mut()
            .zip(words)
            .for_each(|(s, d)| *s = s.wrapping_add(*d));
    }
    sum
}

/// Rounds `Delta*m + noise` to `m`.
#[cfg(test)]
pub(crate) fn decode(phases: &[u64], bits: u32) -> Vec<u32> {
    let shift = 64 - bits;
    let half = 1u64 << (shift - 1);
    phases
        .par_iter()
        .map(|&x| (x.wrapping_add(half) >> shift) as u32)
        .collect()
}
