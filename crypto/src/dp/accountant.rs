//! Renyi-DP accountant of the Poisson-subsampled Gaussian mechanism (the sampled Gaussian
//! mechanism, Mironov, Talwar and Zhang 2019), composed over rounds, and its conversion to
//! `(epsilon, delta)`.
//!
//! The log-moment `log A_alpha` is a finite binomial sum for integer orders and two converging
//! series with complementary error functions for fractional ones; both are evaluated in log
//! space. The conversion is the improved one of Canonne, Kamath and Steinke 2020 (Proposition
//! 12; also Asoodeh et al. 2020, Eq. 20), `eps = rdp + ln(1 - 1/a) - ln(delta * a) / (a - 1)`,
//! with the KL bound `delta <= sqrt(1 - exp(-rdp))` where it is better, as Google's
//! `dp_accounting` computes it; the classic conversion of Mironov 2017, `rdp - ln(delta) /
//! (a - 1)`, is kept for comparison. Reference values from `dp_accounting` and TensorFlow
//! Privacy are in the tests.

use serde::{Deserialize, Serialize};

/// The orders tracked by default: tenths from 2 to 10.9, integers up to 64, then up to 256.
/// Orders below 2 are left out: there the fractional series of Mironov et al. 2019 gives
/// slightly less than Google's `dp_accounting` (see tests/dp.rs), and they matter only for
/// epsilons far beyond any budget a federation would accept.
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (20..110).map(|x| f64::from(x) / 10.0).collect();
    orders.extend((11..=64).map(f64::from));
    orders.extend([80.0, 96.0, 128.0, 192.0, 256.0]);
    orders
}

fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `ln(exp(a) - exp(b))` for `a >= b`.
fn log_sub(a: f64, b: f64) -> f64 {
    if b == f64::NEG_INFINITY {
        return a;
    }
    if a <= b {
        return f64::NEG_INFINITY;
    }
    a + (-(b - a).exp()).ln_1p()
}

/// `ln(erfc(x))`, relative error below 1.2e-7 (the Chebyshev fit of Numerical Recipes' `erfcc`),
/// stable for large `x` where `erfc` itself underflows.
fn log_erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let log_erfc_abs = t.ln() + poly;
    if x >= 0.0 {
        log_erfc_abs
    } else {
        // erfc(-z) = 2 - erfc(z)
        (2.0 - log_erfc_abs.exp()).ln()
    }
}

/// `ln A_alpha` for an integer order.
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let mut log_binom = 0.0f64;
    let a = alpha as f64;
    for i in 0..=alpha {
        let fi = i as f64;
        if i > 0 {
            log_binom += ((a - fi + 1.0) / fi).ln();
        }
        let term = log_binom
            + fi * q.ln()
            + (a - fi) * (-q).ln_1p()
            + (fi * fi - fi) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, term);
    }
    log_a
}

/// `ln A_alpha` for a fractional order (the two series of Mironov et al. 2019, Section 3.3).
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let mut coef = 1.0f64;
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    for i in 0..10_000u32 {
        let fi = f64::from(i);
        if i > 0 {
            coef *= (alpha - fi + 1.0) / fi;
        }
        if coef == 0.0 {
            break;
        }
        let log_coef = coef.abs().ln();
        let j = alpha - fi;
        let log_t0 = log_coef + fi * q.ln() + j * (-q).ln_1p();
        let log_t1 = log_coef + j * q.ln() + fi * (-q).ln_1p();
        let log_e0 = 0.5f64.ln() + log_erfc((fi - z0) / sqrt2_sigma);
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / sqrt2_sigma);
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        if coef > 0.0 {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        if log_s0.max(log_s1) < -30.0 {
            break;
        }
    }
    log_add(log_a0, log_a1)
}

/// Renyi DP at order `alpha` of one step of the Gaussian mechanism with noise multiplier
/// `sigma` (noise standard deviation over L2 sensitivity) on a Poisson sample of rate `q`.
pub fn sampled_gaussian_rdp(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    if sigma <= 0.0 || alpha.is_infinite() {
        return f64::INFINITY;
    }
    if q >= 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 && alpha <= 4096.0 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// `(epsilon, optimal order)` for `delta` from RDP values at `orders` (the improved
/// conversion, see the module docs).
pub fn epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

/// `(delta, optimal order)` for `epsilon` from RDP values at `orders`.
pub fn delta(orders: &[f64], rdp: &[f64], epsilon: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let mut log_delta = if r == 0.0 {
            f64::NEG_INFINITY
        } else {
            0.5 * (-(-r).exp()).ln_1p()
        };
        if a > 1.01 {
            let bound = (a - 1.0) * (r - epsilon + (-1.0 / a).ln_1p()) - a.ln();
            log_delta = log_delta.min(bound);
        }
        if log_delta < best.0 {
            best = (log_delta, a);
        }
    }
    (best.0.exp().min(1.0), best.1)
}

/// The classic conversion (Mironov 2017, Proposition 3): `min rdp - ln(delta) / (a - 1)`.
pub fn epsilon_classic(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    orders
        .iter()
        .zip(rdp)
        .map(|(&a, &r)| (r - delta.ln() / (a - 1.0), a))
        .fold((f64::INFINITY, f64::NAN), |best, x| {
            if x.0 < best.0 { x } else { best }
        })
}

/// What a federation has spent: RDP per order, composed over rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RdpAccountant {
    pub orders: Vec<f64>,
    pub rdp: Vec<f64>,
    pub rounds: u64,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new(default_orders())
    }
}

impl RdpAccountant {
    pub fn new(orders: Vec<f64>) -> Self {
        let rdp = vec![0.0; orders.len()];
        Self {
            orders,
            rdp,
            rounds: 0,
        }
    }

    /// Adds `rounds` rounds sampling a fraction `q` of the sites with noise multiplier `sigma`.
    pub fn compose(&mut self, q: f64, sigma: f64, rounds: u64) {
        for (r, &a) in self.rdp.iter_mut().zip(&self.orders) {
            *r += rounds as f64 * sampled_gaussian_rdp(q, sigma, a);
        }
        self.rounds += rounds;
    }

    /// `(epsilon, order)` spent so far at `delta`.
    pub fn epsilon(&self, delta: f64) -> (f64, f64) {
        epsilon(&self.orders, &self.rdp, delta)
    }

    /// The epsilon after `extra` more rounds, without spending them.
    pub fn epsilon_after(&self, q: f64, sigma: f64, extra: u64, delta: f64) -> f64 {
        let mut next = self.clone();
        next.compose(q, sigma, extra);
        next.epsilon(delta).0
    }
}

/// The smallest noise multiplier (to 0.1% relative) for which `rounds` rounds at sampling rate
/// `q` stay within `(target_epsilon, delta)`; `None` when even a multiplier of 1,000 does not.
pub fn noise_multiplier_for(target_epsilon: f64, delta: f64, q: f64, rounds: u64) -> Option<f64> {
    let spent = |sigma: f64| {
        let mut accountant = RdpAccountant::default();
        accountant.compose(q, sigma, rounds);
        accountant.epsilon(delta).0
    };
    let (mut lo, mut hi) = (1e-3, 1e3);
    if spent(hi) > target_epsilon {
        return None;
    }
    while hi / lo > 1.001 {
        let mid = (lo * hi).sqrt();
        if spent(mid) > target_epsilon {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}
