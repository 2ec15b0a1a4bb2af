//! Differential privacy: the accountant against published reference values, clipping, and the
//! distributed discrete Gaussian noise.

use crypto::dp::accountant::{delta, epsilon, epsilon_classic, sampled_gaussian_rdp};
use crypto::dp::{NoiseShares, RdpAccountant, clip_l2, discrete_gaussian, noise_multiplier_for};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn close(actual: f64, expected: f64, rtol: f64) -> bool {
    (actual - expected).abs() <= rtol * expected.abs()
}

/// Google `dp_accounting` (python/dp_accounting/rdp/rdp_privacy_accountant_test.py,
/// `test_compute_rdp_poisson_sampled_gaussian`): q = 0.01, sigma = 2.5, 50 steps. At order 1.5
/// `dp_accounting` now reports 6.70579741e-4 where TensorFlow Privacy's test (and this code, the
/// series of Mironov et al. 2019) give 6.5007e-4; orders below 2 are therefore not tracked by
/// default ([`crypto::dp::accountant::default_orders`]).
#[test]
fn rdp_of_the_sampled_gaussian_matches_dp_accounting() {
    assert!(close(
        50.0 * sampled_gaussian_rdp(0.01, 2.5, 1.5),
        0.00065007,
        1e-4
    ));
    let orders = [2.5, 5.0, 50.0, 100.0, f64::INFINITY];
    let expected = [
        1.08548710e-03,
        2.18075656e-03,
        2.38460375e-02,
        1.67416308e02,
        f64::INFINITY,
    ];
    for (a, e) in orders.iter().zip(expected) {
        let rdp = 50.0 * sampled_gaussian_rdp(0.01, 2.5, *a);
        if e.is_infinite() {
            assert!(rdp.is_infinite());
        } else {
            assert!(close(rdp, e, 1e-4), "order {a}: {rdp} vs {e}");
        }
    }
}

/// TensorFlow Privacy (tensorflow_privacy/privacy/analysis/rdp_accountant_test.py):
/// `compute_rdp(0.1, 2, 10, 5) = 0.07737`; no sampling is `alpha / (2 sigma^2)`; no data is 0.
#[test]
fn rdp_matches_tensorflow_privacy() {
    assert!(close(
        10.0 * sampled_gaussian_rdp(0.1, 2.0, 5.0),
        0.07737,
        1e-4
    ));
    assert_eq!(sampled_gaussian_rdp(1.0, 10.0, 20.0), 0.1);
    assert_eq!(sampled_gaussian_rdp(0.0, 10.0, 20.0), 0.0);
}

/// TensorFlow Privacy, classic conversion: `test_get_privacy_spent_check_target_delta`
/// (eps 1.258575 at order 20) and `test_check_composition` (eps 8.509656 at order 2.5).
#[test]
fn the_classic_conversion_matches_tensorflow_privacy() {
    let orders: Vec<f64> = (2..33).map(f64::from).collect();
    let rdp: Vec<f64> = orders
        .iter()
        .map(|&a| 10_000.0 * sampled_gaussian_rdp(0.01, 4.0, a))
        .collect();
    let (eps, order) = epsilon_classic(&orders, &rdp, 1e-5);
    assert!(close(eps, 1.258575, 1e-5), "{eps}");
    assert_eq!(order, 20.0);

    let orders = [
        1.25, 1.5, 1.75, 2., 2.5, 3., 4., 5., 6., 7., 8., 10., 12., 14., 16., 20., 24., 28., 32.,
        64., 256.,
    ];
    let rdp: Vec<f64> = orders
        .iter()
        .map(|&a| {
            40_000.0 * sampled_gaussian_rdp(1e-4, 0.4, a)
                + 100.0 * sampled_gaussian_rdp(0.1, 2.0, a)
        })
        .collect();
    let (eps, order) = epsilon_classic(&orders, &rdp, 1e-5);
    assert!(close(eps, 8.509656, 1e-5), "{eps}");
    assert_eq!(order, 2.5);
}

/// `dp_accounting`, improved conversion: `test_compute_epsilon_delta_pure_dp` (constant RDP 1.1
/// over orders 2..32 gives eps 1.32783806176 at order 32, and back) and
/// `test_compute_epsilon_delta_gaussian` (sigma 4.530877117 without sampling is (1, 1e-6)-DP).
#[test]
fn the_improved_conversion_matches_dp_accounting() {
    let orders: Vec<f64> = (2..33).map(f64::from).collect();
    let rdp = vec![1.1; orders.len()];
    let (eps, order) = epsilon(&orders, &rdp, 1e-5);
    assert!(close(eps, 1.32783806176, 1e-9), "{eps}");
    assert_eq!(order, 32.0);
    let (d, order) = delta(&orders, &rdp, 1.32783806176);
    assert!(close(d, 1e-5, 1e-6), "{d}");
    assert_eq!(order, 32.0);

    let orders: Vec<f64> = (1000..100_000).map(|i| 0.001 * f64::from(i)).collect();
    let rdp: Vec<f64> = orders
        .iter()
        .map(|&a| sampled_gaussian_rdp(1.0, 4.530877117, a))
        .collect();
    assert!(close(epsilon(&orders, &rdp, 1e-6).0, 1.0, 1e-6));
    assert!(close(delta(&orders, &rdp, 1.0).0, 1e-6, 1e-5));
}

#[test]
fn the_improved_conversion_is_never_worse_and_the_accountant_composes() {
    let mut accountant = RdpAccountant::default();
    accountant.compose(0.1, 1.1, 100);
    let classic = epsilon_classic(&accountant.orders, &accountant.rdp, 1e-5).0;
    let (improved, _) = accountant.epsilon(1e-5);
    assert!(improved < classic, "{improved} vs {classic}");
    let mut twice = RdpAccountant::default();
    twice.compose(0.1, 1.1, 50);
    twice.compose(0.1, 1.1, 50);
    assert!(close(twice.epsilon(1e-5).0, improved, 1e-12));
    assert_eq!(twice.rounds, 100);
    assert!(accountant.epsilon_after(0.1, 1.1, 10, 1e-5) > improved);
    // Calibration: the multiplier found spends at most the target, and a little less noise more.
    let sigma = noise_multiplier_for(4.0, 1e-5, 0.5, 120).unwrap();
    let spent = |s: f64| {
        let mut a = RdpAccountant::default();
        a.compose(0.5, s, 120);
        a.epsilon(1e-5).0
    };
    assert!(spent(sigma) <= 4.0 && spent(sigma * 0.99) > 4.0, "{sigma}");
}

#[test]
fn clipping_bounds_every_update() {
    let mut update = vec![3.0f32, 4.0];
    let before = clip_l2(&mut update, 1.0).unwrap();
    assert_eq!(before, 5.0);
    let norm = (update[0] * update[0] + update[1] * update[1]).sqrt();
    assert!((norm - 1.0).abs() < 1e-6);
    let mut small = vec![0.1f32, 0.2];
    clip_l2(&mut small, 1.0).unwrap();
    assert_eq!(small, [0.1, 0.2]);
    assert!(clip_l2(&mut [f32::NAN], 1.0).is_err());
    assert!(clip_l2(&mut [1.0], 0.0).is_err());
}

/// The discrete Gaussian sampler: mean 0, the target variance, symmetric, and the probability
/// mass of 0 of `N_Z(0, 4)` (0.19947...). With 200,000 draws the standard error of the variance
/// is about 0.3% of it; the bounds below are more than 5 standard errors wide (a false failure
/// about once in 3 million runs for each check), and the seed is fixed.
#[test]
fn discrete_gaussian_draws_have_the_target_distribution() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let sigma = 2.0;
    let n = 200_000;
    let draws: Vec<i64> = (0..n).map(|_| discrete_gaussian(&mut rng, sigma)).collect();
    let mean = draws.iter().sum::<i64>() as f64 / n as f64;
    let var = draws
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    // Variance of N_Z(0, 4) is within 1e-5 of 4 (it is below sigma^2, by less than that here).
    assert!(mean.abs() < 5.0 * (4.0 / n as f64).sqrt(), "mean {mean}");
    assert!(
        (var - 4.0).abs() < 5.0 * 4.0 * (2.0 / n as f64).sqrt(),
        "variance {var}"
    );
    // P(0) = 1 / sum_k exp(-k^2 / 8).
    let normalizer: f64 = (-40..=40)
        .map(|k: i32| (-(f64::from(k * k)) / 8.0).exp())
        .sum();
    let p0 = 1.0 / normalizer;
    let zeros = draws.iter().filter(|&&x| x == 0).count() as f64 / n as f64;
    assert!(
        (zeros - p0).abs() < 5.0 * (p0 * (1.0 - p0) / n as f64).sqrt(),
        "{zeros} vs {p0}"
    );
    let positive = draws.iter().filter(|&&x| x > 0).count() as f64;
    let negative = draws.iter().filter(|&&x| x < 0).count() as f64;
    assert!((positive - negative).abs() < 5.0 * (positive + negative).sqrt());
}

/// Noise shares of N participants sum to the target variance when only the minimum
/// contributes, and to more when everyone does; the shares travel modulo 2^32 like the sum.
#[test]
fn summed_noise_shares_carry_the_target_variance() {
    let shares = NoiseShares::new(40.0, 10).unwrap();
    assert!((shares.share_sigma() - 40.0 / 10f64.sqrt()).abs() < 1e-12);
    let len = 20_000;
    let sum_of = |participants: u64| {
        let mut total = vec![0u32; len];
        for p in 0..participants {
            let mut rng = ChaCha20Rng::seed_from_u64(1000 + p);
            let mut words = vec![0u32; len];
            shares.add_share(&mut words, &mut rng);
            for (t, w) in total.iter_mut().zip(&words) {
                *t = t.wrapping_add(*w);
            }
        }
        let values: Vec<f64> = total.iter().map(|&w| f64::from(w as i32)).collect();
        values.iter().map(|v| v * v).sum::<f64>() / len as f64
    };
    // Standard error of a variance estimate from 20,000 draws: 1% of it; bound at 5%.
    let minimum = sum_of(10);
    assert!((minimum / 1600.0 - 1.0).abs() < 0.05, "{minimum}");
    let everyone = sum_of(15);
    assert!((everyone / 2400.0 - 1.0).abs() < 0.05, "{everyone}");
    assert!(
        NoiseShares::new(3.0, 10).is_err(),
        "shares below 2 grid units are refused"
    );
}
