//! Noise analysis: how large the decryption error of an aggregate can get, and how much smudging
//! a partial decryption needs.
//!
//! Decrypting the sum of `n` ciphertexts under the collective key `s = s_1 + ... + s_m` leaves,
//! per coefficient,
//!
//! ```text
//! v = U*e + sum_k e0_k + E1*s + sum_k r0_k + R1*s  +  sum_j E_j + sum_j r_j
//!     (ciphertext noise, "delta")                    (smudging and rounding of t partials)
//! ```
//!
//! with `U = sum_k u_k` (binary encryption randomness, so `U` has coefficients in [0, n]), `e`
//! the collective public-key noise (m TUniform(17) terms per coefficient), `E1 = sum_k e1_k`,
//! `r0`, `R1` the rounding of ciphertext words to multiples of 2^16, and `E_j` the Gaussian
//! smudging of partial `j`. Conditioned on `U` and `s`, every term is an independent, zero-mean,
//! bounded (or Gaussian) variable, so the sum is sub-Gaussian with variance proxy the sum of the
//! squared bounds (Hoeffding). We take `U` and `s` at their worst case (`n` and `m` in every
//! coefficient), so the bound holds for every key and every encryption randomness:
//!
//! ```text
//! P(|v| >= 12 * sqrt(proxy)) <= 2 exp(-72) < 2^-102   per coefficient
//! ```
//!
//! **Smudging.** A partial decryption `d_j = c1 * w_j + E_j` is simulatable from the decrypted
//! sum except for the ciphertext noise `delta` above, which depends on the secret key. Gaussian
//! smudging of standard deviation `sigma` hides a shift `delta` with Rényi divergence
//! `R_2 = exp(sum delta^2 / sigma^2)` over all coefficients a member ever releases (Bai et al.,
//! ASIACRYPT 2015). With `sigma^2 = 2 * budget * Var(delta)` we get `R_2 <= exp(1/2)` for the
//! whole decryption budget: any key-recovery attack succeeding with probability `p` given the
//! partial decryptions succeeds with probability at least `p^2 / 1.65` without them. Statistical
//! smudging (`sigma = 2^40 * |delta|`) would need q > 2^100, which tfhe's 64-bit parameters do
//! not have; docs/he.md discusses the trade-off.

use serde::Serialize;

use super::params::{
    AggregationPlan, CIPHERTEXT_DROPPED_BITS, NOISE_BOUND_LOG2, PARTIAL_DROPPED_BITS,
    POLYNOMIAL_SIZE,
};

/// Tail factor of the correctness bound: `2 exp(-TAIL^2 / 2) < 2^-102` per coefficient.
const TAIL: f64 = 12.0;

/// Ratio `sigma^2 / (budget * Var(delta))` of the smudging noise: Rényi divergence exp(1/2).
const SMUDGING_RATIO: f64 = 2.0;

/// The noise analysis of a plan; every figure is per coefficient.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NoiseBudget {
    /// log2 of the standard deviation of an aggregate's ciphertext noise (worst case over the
    /// encryption randomness and key), at the plan's maximum summand count.
    pub ciphertext_std_log2: f64,
    /// Standard deviation of the Gaussian smudging each partial decryption adds.
    pub smudging_std: f64,
    /// log2 of [`Self::smudging_std`].
    pub smudging_std_log2: f64,
    /// log2 of the bound the total decryption noise stays below except with probability
    /// 2^[`Self::failure_probability_log2`].
    pub decryption_bound_log2: f64,
    /// log2 of half a plaintext step, Delta / 2 = 2^(63 - bits).
    pub half_step_log2: u32,
    /// log2 of the probability that one coefficient decrypts wrongly.
    pub failure_probability_log2: f64,
    /// Rényi divergence (order 2) between real and simulated partial decryptions over a member's
    /// whole decryption budget.
    pub renyi_divergence: f64,
}

impl NoiseBudget {
    pub(crate) fn analyse(plan: &AggregationPlan) -> Self {
        let n = f64::from(plan.max_summands().0);
        let m = f64::from(plan.committee().0);
        let t = f64::from(plan.threshold().0);
        let budget = plan.decryption_budget().0 as f64;
        let dimension = POLYNOMIAL_SIZE as f64;

        let bound = 2f64.powi(NOISE_BOUND_LOG2 as i32);
        // TUniform(b) takes the values -2^b..2^b, the two ends with half weight.
        let tuniform_variance = (2f64.powi(2 * NOISE_BOUND_LOG2 as i32 + 1) + 1.0) / 6.0;
        let rounding = 2f64.powi(CIPHERTEXT_DROPPED_BITS as i32 - 1);
        let partial_rounding = 2f64.powi(PARTIAL_DROPPED_BITS as i32 - 1);

        // Worst cases: every coefficient of U is n and every coefficient of s is m.
        let sum_u_squared = dimension * n * n;
        let sum_s_squared = dimension * m * m;
        // Coefficient weights of the TUniform terms: U*e (m key shares), e0, E1*s.
        let tuniform_weight = m * sum_u_squared + n + n * sum_s_squared;
        // Rounding of c0 (weight 1) and of c1 (multiplied by s), once per summand.
        let rounding_weight = n * (1.0 + sum_s_squared);

        let ciphertext_variance =
            tuniform_variance * tuniform_weight + rounding * rounding / 3.0 * rounding_weight;
        let ciphertext_proxy =
            bound * bound * tuniform_weight + rounding * rounding * rounding_weight;

        let smudging_variance = SMUDGING_RATIO * budget * ciphertext_variance;
        let total_proxy =
            ciphertext_proxy + t * (smudging_variance + partial_rounding * partial_rounding);
        let decryption_bound_log2 = (TAIL * total_proxy.sqrt()).log2();

        Self {
            ciphertext_std_log2: ciphertext_variance.sqrt().log2(),
            smudging_std: smudging_variance.sqrt(),
            smudging_std_log2: smudging_variance.sqrt().log2(),
            decryption_bound_log2,
            half_step_log2: 63 - plan.plaintext_bits().0,
            failure_probability_log2: (2.0 * (-TAIL * TAIL / 2.0).exp()).log2(),
            renyi_divergence: (1.0 / SMUDGING_RATIO).exp(),
        }
    }

    /// Whether an aggregate of the plan's size always decrypts (up to the failure probability).
    #[must_use]
    pub fn fits(&self) -> bool {
        self.decryption_bound_log2 < f64::from(self.half_step_log2)
    }

    /// The most plaintext bits for which the bound stays below half a step (0 if none).
    #[must_use]
    pub fn max_plaintext_bits(&self) -> u32 {
        let bits = (63.0 - self.decryption_bound_log2).ceil() - 1.0;
        bits.clamp(0.0, 32.0) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::super::params::{CommitteeSize, PlaintextBits, SlotCount, SummandCount, Threshold};
    use super::*;

    fn plan(summands: u32, committee: u16, threshold: u16, budget: u64) -> AggregationPlan {
        AggregationPlan::widest(
            SummandCount(summands),
            CommitteeSize(committee),
            Threshold(threshold),
            SlotCount(budget),
        )
        .unwrap()
    }

    #[test]
    fn the_benchmark_plan_leaves_nineteen_bits() {
        // 50 updates of 1,000,000 values, committee 5, threshold 3, one decryption.
        let budget = plan(50, 5, 3, 1_000_000).noise_budget();
        assert_eq!(budget.max_plaintext_bits(), 19);
        assert!(
            (28.0..29.5).contains(&budget.ciphertext_std_log2),
            "{budget:?}"
        );
        assert!(
            (38.5..39.5).contains(&budget.smudging_std_log2),
            "{budget:?}"
        );
        assert!(budget.failure_probability_log2 < -100.0);
        assert!(budget.renyi_divergence < 1.7);
    }

    #[test]
    fn more_summands_members_or_budget_never_give_more_bits() {
        let base = plan(50, 5, 3, 100_000).plaintext_bits().0;
        assert!(plan(500, 5, 3, 100_000).plaintext_bits().0 < base);
        assert!(plan(50, 20, 3, 100_000).plaintext_bits().0 <= base);
        assert!(plan(50, 5, 5, 100_000).plaintext_bits().0 <= base);
        assert!(plan(50, 5, 3, 10_000_000).plaintext_bits().0 < base);
    }

    #[test]
    fn a_plan_beyond_the_budget_is_refused_with_the_bits_that_fit() {
        let widest = plan(50, 5, 3, 1_000_000).plaintext_bits().0;
        let refused = AggregationPlan::new(
            PlaintextBits(widest + 1),
            SummandCount(50),
            CommitteeSize(5),
            Threshold(3),
            SlotCount(1_000_000),
        );
        match refused {
            Err(super::super::HeError::NoiseBudget { max_bits, .. }) => {
                assert_eq!(max_bits, widest)
            }
            other => panic!("{other:?}"),
        }
    }
}
