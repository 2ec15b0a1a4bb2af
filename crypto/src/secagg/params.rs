//! Round parameters and the constraints that keep them safe.

use serde::{Deserialize, Serialize};

use crate::CryptoError;

/// Longest masked vector, in 32-bit words (256 MiB): bounds what a decoder will allocate.
pub const MAX_VECTOR_LEN: u32 = 1 << 26;
/// Largest roster of one round.
pub const MAX_ROSTER: usize = 1 << 16;
/// Largest neighbour count: Shamir shares are evaluated at the points 1..=255 of GF(2^8), and an
/// odd neighbour count on an odd roster gains one neighbour (see `NeighbourGraph`).
pub const MAX_NEIGHBOURS: u32 = 250;

/// Parameters of one secure-aggregation round, fixed by the coordinator's round plan.
///
/// Invariants checked by [`SecAggParams::validate`], following the semi-honest analysis of Bell
/// et al. 2020 (SecAgg+): `2 <= threshold <= neighbours` (no single neighbour holds a secret),
/// `neighbours < roster` and `min_survivors > threshold` (every survivor needs `threshold` live
/// neighbours). Privacy needs fewer than `threshold` corrupted neighbours per participant;
/// correctness needs at least `threshold` live ones. [`SecAggParams::resists_equivocation`]
/// tells whether the stronger `2 * threshold > neighbours` also holds, under which two disjoint
/// groups of `threshold` neighbours cannot exist, so even a coordinator that told different
/// neighbours different stories could not collect both secrets of one participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecAggParams {
    /// Length of the masked vector in 32-bit words (the encoded update, weight slot included).
    pub vector_len: u32,
    /// k: how many neighbours each participant masks with and shares its secrets to.
    pub neighbours: u32,
    /// t: how many of a participant's neighbours must answer to rebuild one of its secrets.
    pub threshold: u32,
    /// The round aborts, with no sum, when fewer participants remain after any phase.
    pub min_survivors: u32,
}

impl SecAggParams {
    /// Parameters with a neighbour count of `3 * ceil(log2 n)` (at least 3, at most `n - 1`), a
    /// threshold of a third of it (at least 2), and a minimum of `max(threshold + 1, n / 2)`
    /// survivors: a starting point for rosters of `n` where up to ~40% may drop during a round,
    /// not a security proof (see docs/secagg.md).
    pub fn suggested(roster: usize, vector_len: u32) -> Result<Self, CryptoError> {
        if roster < 4 {
            return Err(CryptoError::InvalidParams(format!(
                "a roster of {roster} is too small for masking with neighbours (need 4)"
            )));
        }
        let log2 = usize::BITS - (roster - 1).leading_zeros();
        let neighbours = (3 * log2).clamp(3, MAX_NEIGHBOURS).min(count(roster - 1));
        let threshold = neighbours.div_ceil(3).max(2);
        let min_survivors = (threshold + 1).max(count(roster / 2));
        let params = Self {
            vector_len,
            neighbours,
            threshold,
            min_survivors,
        };
        params.validate(roster)?;
        Ok(params)
    }

    /// Checks the invariants above against a roster of `roster` participants.
    pub fn validate(&self, roster: usize) -> Result<(), CryptoError> {
        let fail = |why: String| Err(CryptoError::InvalidParams(why));
        let Self {
            vector_len,
            neighbours: k,
            threshold: t,
            min_survivors,
        } = *self;
        if vector_len == 0 || vector_len > MAX_VECTOR_LEN {
            return fail(format!(
                "vector length {vector_len} is outside 1..={MAX_VECTOR_LEN}"
            ));
        }
        if !(2..=MAX_NEIGHBOURS).contains(&k) {
            return fail(format!(
                "neighbour count {k} is outside 2..={MAX_NEIGHBOURS}"
            ));
        }
        if t < 2 || t > k {
            return fail(format!("threshold {t} must satisfy 2 <= t <= k (k = {k})"));
        }
        if min_survivors <= t {
            return fail(format!(
                "min_survivors {min_survivors} must exceed the threshold {t}"
            ));
        }
        if roster > MAX_ROSTER
            || (roster as u64) < u64::from(min_survivors)
            || roster as u64 <= u64::from(t)
        {
            return fail(format!(
                "roster of {roster} must hold min_survivors ({min_survivors}) and at most {MAX_ROSTER}"
            ));
        }
        Ok(())
    }

    /// Whether `2 * threshold > neighbours`: the never-both-secrets guarantee then survives even
    /// a coordinator that lies about who dropped (not needed against an honest-but-curious one).
    #[must_use]
    pub fn resists_equivocation(&self) -> bool {
        2 * self.threshold > self.neighbours
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(k: u32, t: u32, min: u32) -> SecAggParams {
        SecAggParams {
            vector_len: 10,
            neighbours: k,
            threshold: t,
            min_survivors: min,
        }
    }

    #[test]
    fn constraints_of_bell_et_al_are_enforced() {
        assert!(params(3, 2, 3).validate(50).is_ok());
        assert!(params(3, 2, 3).resists_equivocation());
        assert!(params(8, 3, 4).validate(50).is_ok());
        assert!(!params(8, 3, 4).resists_equivocation());
        assert!(params(3, 4, 5).validate(50).is_err(), "t must not exceed k");
        assert!(
            params(2, 1, 3).validate(50).is_err(),
            "t of 1 lets one neighbour unmask"
        );
        assert!(
            params(3, 2, 2).validate(50).is_err(),
            "survivors must exceed t"
        );
        assert!(
            params(3, 2, 60).validate(50).is_err(),
            "roster smaller than min"
        );
        assert!(
            params(251, 200, 300).validate(1000).is_err(),
            "k beyond GF(2^8) points"
        );
        let mut long = params(3, 2, 3);
        long.vector_len = MAX_VECTOR_LEN + 1;
        assert!(long.validate(50).is_err());
    }

    #[test]
    fn suggestion_grows_logarithmically_and_validates() {
        let small = SecAggParams::suggested(10, 1).unwrap();
        let large = SecAggParams::suggested(1000, 1).unwrap();
        assert_eq!((small.neighbours, small.threshold), (9, 3));
        assert_eq!((large.neighbours, large.threshold), (30, 10));
        assert_eq!(large.min_survivors, 500);
        assert!(SecAggParams::suggested(3, 1).is_err());
    }
}
