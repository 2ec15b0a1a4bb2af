//! Site-level clipping and distributed discrete Gaussian noise.
//!
//! Each participant clips its whole update to L2 norm `C` and, after fixed-point encoding, adds
//! its share of integer noise drawn from the discrete Gaussian `N_Z(0, s^2)` (Canonne, Kamath
//! and Steinke 2020, Algorithm 3). With [`NoiseShares`], the shares are sized so that any
//! `min_contributors` of them already carry the target variance: dropouts down to the round's
//! minimum never leave the aggregate with less noise than the accountant assumed (more
//! contributors only add noise). No party, the coordinator included, ever holds the whole
//! noise. A sum of independent discrete Gaussians is not exactly a discrete Gaussian; Kairouz,
//! Liu and Steinke 2021 (Theorem 1) bound the difference, which is negligible once each share's
//! standard deviation is above a few units of the integer grid (checked by [`NoiseShares::new`]).
//!
//! The sampler uses floating-point Bernoulli trials, not the exact rational arithmetic of the
//! paper, and does not run in constant time: a co-located observer of a participant's CPU
//! timing is outside the threat model.

use rand::{Rng, RngCore};

use crate::CryptoError;

/// Scales `update` in place to L2 norm at most `clip`; returns the norm before clipping.
pub fn clip_l2(update: &mut [f32], clip: f32) -> Result<f64, CryptoError> {
    if !(clip.is_finite() && clip > 0.0) {
        return Err(CryptoError::InvalidParams(format!(
            "clip norm {clip} must be positive"
        )));
    }
    let norm = update
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    if !norm.is_finite() {
        return Err(CryptoError::InvalidParams(
            "update has a non-finite value".into(),
        ));
    }
    if norm > f64::from(clip) {
        let factor = f64::from(clip) / norm;
        for v in update.iter_mut() {
            *v = (f64::from(*v) * factor) as f32;
        }
    }
    Ok(norm)
}

fn bernoulli_exp(rng: &mut impl RngCore, gamma: f64) -> bool {
    rng.random::<f64>() < (-gamma).exp()
}

/// One draw of the discrete Gaussian `N_Z(0, sigma^2)` (CKS 2020, Algorithm 3: discrete Laplace
/// proposals with rejection).
pub fn discrete_gaussian(rng: &mut impl RngCore, sigma: f64) -> i64 {
    if sigma <= 0.0 {
        return 0;
    }
    let t = sigma.floor() + 1.0;
    let var = sigma * sigma;
    loop {
        let u = rng.random_range(0..t as u64) as f64;
        if !bernoulli_exp(rng, u / t) {
            continue;
        }
        let mut v = 0u64;
        while bernoulli_exp(rng, 1.0) {
            v += 1;
        }
        let x = u + t * v as f64;
        let negative = rng.random_bool(0.5);
        if negative && x == 0.0 {
            continue;
        }
        let z = if negative { -x } else { x };
        let excess = z.abs() - var / t;
        if bernoulli_exp(rng, excess * excess / (2.0 * var)) {
            return z as i64;
        }
    }
}

/// How the noise of one round is split among its participants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseShares {
    /// Standard deviation the aggregate must carry, in units of the integer grid.
    pub total_sigma: f64,
    /// The fewest contributions a round may finish with (the SecAgg threshold or HE minimum).
    pub min_contributors: u32,
}

/// Smallest per-share standard deviation (grid units) for which sums of discrete Gaussians stay
/// close to one (Kairouz et al. 2021).
pub const MIN_SHARE_SIGMA: f64 = 2.0;

impl NoiseShares {
    pub fn new(total_sigma: f64, min_contributors: u32) -> Result<Self, CryptoError> {
        if min_contributors == 0 {
            return Err(CryptoError::InvalidParams(
                "noise needs at least one contributor".into(),
            ));
        }
        let shares = Self {
            total_sigma,
            min_contributors,
        };
        if !(total_sigma.is_finite() && shares.share_sigma() >= MIN_SHARE_SIGMA) {
            return Err(CryptoError::InvalidParams(format!(
                "each of {min_contributors} noise shares would have a standard deviation of {:.3} \
                 grid units, below {MIN_SHARE_SIGMA}: raise the fixed-point scale or the noise",
                shares.share_sigma()
            )));
        }
        Ok(shares)
    }

    /// One participant's standard deviation: `total / sqrt(min_contributors)`.
    pub fn share_sigma(&self) -> f64 {
        self.total_sigma / f64::from(self.min_contributors).sqrt()
    }

    /// Adds one participant's noise share to its encoded words (modulo 2^32, as the sum is).
    pub fn add_share(&self, words: &mut [u32], rng: &mut impl RngCore) {
        let sigma = self.share_sigma();
        for w in words.iter_mut() {
            *w = w.wrapping_add(discrete_gaussian(rng, sigma) as u32);
        }
    }
}

/// Headroom (in units of the codec's clip) that a sum needs for noise of multiplier
/// `noise_multiplier`: eight standard deviations (a wrap then needs an 8-sigma draw, probability
/// below 1e-15 per value), plus one for the rounding slack in the sensitivity.
pub fn headroom_units(noise_multiplier: f64) -> u32 {
    (8.0 * noise_multiplier * 1.001).ceil() as u32 + 1
}

/// The noise shares of a DP round: L2 sensitivity of one site's encoded update of `values`
/// words (its clip in grid units plus the rounding slack `sqrt(values) / 2`), times
/// `noise_multiplier`, split among at least `min_contributors`.
pub fn round_noise(
    codec: &crate::fixed_point::FixedPointCodec,
    values: usize,
    noise_multiplier: f64,
    min_contributors: u32,
) -> Result<NoiseShares, CryptoError> {
    let sensitivity = f64::from(codec.unit()) + (values as f64).sqrt() / 2.0;
    NoiseShares::new(noise_multiplier * sensitivity, min_contributors)
}
