//! Config presets, validation and serialization.

use datasets::Target;
use models::{ForecasterConfig, ModelError, QuantileForecast};

#[test]
fn presets_validate_and_differ_by_target() {
    let load = ForecasterConfig::day_ahead(Target::Load, 340, 24);
    let pv = ForecasterConfig::day_ahead(Target::Pv, 340, 24);
    load.validate().unwrap();
    pv.validate().unwrap();
    assert_eq!(load.hidden, vec![128, 128]);
    assert_eq!(pv.hidden, vec![512]);
    assert_eq!(pv.num_params(), 340 * 512 + 512 + 512 * 72 + 72);
}

#[test]
fn config_survives_json() {
    let config = ForecasterConfig::new(40, 6)
        .with_hidden(vec![7, 5])
        .with_quantiles(vec![0.2, 0.5, 0.8])
        .with_refit(true);
    let json = serde_json::to_string(&config).unwrap();
    let back: ForecasterConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    assert_eq!(back.anchor_quantile(), 1);
}

#[test]
fn bad_hyperparameters_are_typed_errors() {
    let base = ForecasterConfig::new(10, 2);
    let bad = [
        base.clone().with_dropout(1.0),
        base.clone().with_learning_rate(0.0),
        base.clone().with_batch_size(0),
        base.clone().with_patience(0),
        base.clone().with_plateau_decay(0.0),
        base.clone().with_validation_fraction(1.0),
        base.clone().with_weight_decay(-1.0),
        base.clone().with_proximal_mu(f32::NAN),
        base.clone().with_hidden(vec![8, 0]),
        ForecasterConfig::new(0, 2),
    ];
    for config in bad {
        assert!(
            matches!(config.validate(), Err(ModelError::InvalidConfig(_))),
            "{config}"
        );
    }
}

#[test]
fn clamping_at_zero_kw_respects_each_site_and_keeps_order() {
    let data = datasets::SampleSet {
        n_features: 1,
        context: 1,
        horizon: 1,
        step_seconds: 3_600,
        x: vec![0.0, 0.0],
        y: vec![0.0, 0.0],
        daylight: vec![true, true],
        origins: vec![0, 0],
        sites: vec![0, 1],
        site_ids: vec!["pv".into(), "load".into()],
        normalizations: vec![
            datasets::Normalization {
                offset_kw: 0.0,
                scale_kw: 10.0,
            },
            datasets::Normalization {
                offset_kw: 5.0,
                scale_kw: 1.0,
            },
        ],
    };
    let mut forecast = QuantileForecast {
        quantiles: vec![0.1, 0.9],
        horizon: 1,
        values: vec![-0.3, 0.2, -6.0, -4.0],
    };
    forecast.clamp_min_kw(&data, 0.0).unwrap();
    // Site 0: 0 kW is 0.0 normalized; site 1: 0 kW is -5.0 normalized.
    assert_eq!(forecast.values, vec![0.0, 0.2, -5.0, -4.0]);
}
