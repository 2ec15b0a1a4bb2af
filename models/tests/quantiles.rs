//! Quantiles never cross, whatever the weights and inputs.

mod common;

use models::{ForecasterConfig, QuantileForecaster, from_flat, train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn assert_ordered(forecast: &models::QuantileForecast) {
    let q = forecast.quantiles.len();
    for i in 0..forecast.len() {
        for h in 0..forecast.horizon {
            for level in 1..q {
                let (lo, hi) = (forecast.value(i, level - 1, h), forecast.value(i, level, h));
                assert!(
                    lo <= hi,
                    "sample {i} step {h}: level {} = {lo} > level {level} = {hi}",
                    level - 1
                );
            }
        }
    }
}

#[test]
fn adversarial_weights_and_inputs_never_cross() {
    let config = ForecasterConfig::new(20, 6)
        .with_hidden(vec![12])
        .with_quantiles(vec![0.05, 0.1, 0.5, 0.9, 0.95])
        .with_activation(models::Activation::Gelu);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for trial in 0..5 {
        let scale = 10f32.powi(trial - 1);
        let flat: Vec<f32> = (0..config.num_params())
            .map(|_| scale * (rng.random::<f32>() - 0.5))
            .collect();
        let forecaster = QuantileForecaster::from_flat(config.clone(), &flat).unwrap();
        let x: Vec<f32> = (0..200 * 20)
            .map(|_| 10.0 * scale * (rng.random::<f32>() - 0.5))
            .collect();
        let forecast = forecaster.predict_rows(&x).unwrap();
        assert_eq!(forecast.len(), 200);
        assert_ordered(&forecast);
    }
    // from_flat on the inference device also works directly.
    let flat = vec![0.0; config.num_params()];
    let model = from_flat(&config, &flat, &models::inference_device()).unwrap();
    assert_eq!(model.quantile_count(), 5);
}

#[test]
fn trained_model_keeps_quantiles_ordered_and_spread() {
    let (train_set, test) = common::site("s", 40, 34, 48, 8);
    let config = ForecasterConfig::new(train_set.n_features, 24)
        .with_hidden(vec![32])
        .with_epochs(5);
    let trained = train(&config, &train_set).unwrap();
    let forecast = trained.forecaster.predict(&test).unwrap();
    assert_ordered(&forecast);
    // With noisy targets the p10-p90 band must have learnt a positive width.
    let width: f32 = (0..forecast.len())
        .flat_map(|i| (0..24).map(move |h| (i, h)))
        .map(|(i, h)| forecast.value(i, 2, h) - forecast.value(i, 0, h))
        .sum::<f32>()
        / (forecast.len() * 24) as f32;
    assert!(width > 0.05, "mean p10-p90 width {width}");
}

#[test]
fn invalid_quantile_configs_are_rejected() {
    for levels in [
        vec![],
        vec![0.5, 0.1],
        vec![0.0, 0.5],
        vec![0.5, 1.0],
        vec![0.3, 0.3],
    ] {
        let config = ForecasterConfig::new(10, 2).with_quantiles(levels.clone());
        assert!(
            matches!(
                config.init(&models::inference_device()),
                Err(models::ModelError::InvalidConfig(_))
            ),
            "{levels:?} accepted"
        );
    }
}
