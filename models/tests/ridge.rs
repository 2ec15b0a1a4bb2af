//! Ridge regression recovers a linear map and brackets it with ordered residual quantiles.

use datasets::{Normalization, SampleSet};
use models::{RidgeConfig, RidgeForecaster};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn linear_samples(n: usize, noise: f32, seed: u64) -> SampleSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (p, h) = (5, 3);
    let mut set = SampleSet {
        n_features: p,
        context: 0,
        horizon: h,
        step_seconds: 3_600,
        site_ids: vec!["a".into()],
        normalizations: vec![Normalization {
            offset_kw: 0.0,
            scale_kw: 1.0,
        }],
        ..SampleSet::default()
    };
    for i in 0..n {
        let x: Vec<f32> = (0..p).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        // y_h = 1 + x_0 - 2 x_1 + h * x_4
        for step in 0..h {
            let y =
                1.0 + x[0] - 2.0 * x[1] + step as f32 * x[4] + noise * (rng.random::<f32>() - 0.5);
            set.y.push(y);
        }
        set.x.extend(x);
        set.daylight.extend([true; 3]);
        set.origins.push(i as i64 * 3_600);
        set.sites.push(0);
    }
    set
}

#[test]
fn recovers_a_linear_map() {
    let train = linear_samples(2_000, 0.0, 1);
    let ridge = RidgeForecaster::fit(
        &RidgeConfig {
            lambdas: vec![1e-6, 1.0],
            ..RidgeConfig::default()
        },
        &train,
    )
    .unwrap();
    assert_eq!(ridge.lambda(), 1e-6);
    let test = linear_samples(50, 0.0, 2);
    let f = ridge.predict(&test).unwrap();
    for i in 0..test.len() {
        for step in 0..3 {
            let err = (f.value(i, 1, step) - test.y[i * 3 + step]).abs();
            assert!(err < 1e-3, "sample {i} step {step}: error {err}");
        }
    }
}

#[test]
fn residual_quantiles_bracket_noisy_targets() {
    let train = linear_samples(3_000, 1.0, 3);
    let ridge = RidgeForecaster::fit(&RidgeConfig::default(), &train).unwrap();
    let test = linear_samples(2_000, 1.0, 4);
    let f = ridge.predict(&test).unwrap();
    let mut inside = 0;
    for i in 0..test.len() {
        for step in 0..3 {
            let (lo, mid, hi) = (
                f.value(i, 0, step),
                f.value(i, 1, step),
                f.value(i, 2, step),
            );
            assert!(lo <= mid && mid <= hi);
            let y = test.y[i * 3 + step];
            inside += usize::from(lo <= y && y <= hi);
        }
    }
    // Uniform noise of width 1: p10-p90 should hold about 80% of the targets.
    let coverage = inside as f64 / (test.len() * 3) as f64;
    assert!((0.74..0.86).contains(&coverage), "coverage {coverage}");
}

#[test]
fn bad_ridge_config_is_rejected() {
    let train = linear_samples(100, 0.1, 5);
    let bad = RidgeConfig {
        lambdas: vec![-1.0],
        ..RidgeConfig::default()
    };
    assert!(matches!(
        RidgeForecaster::fit(&bad, &train),
        Err(models::ModelError::InvalidConfig(_))
    ));
}
