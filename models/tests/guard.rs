//! The seasonal guard: a site falls back to seasonal naive exactly when its learned model
//! loses to it on the site's own validation days, never on the test days.

mod common;

use datasets::SampleSet;
use models::{
    ModelError, QuantileForecast, Season, SiteChoice, guard_site, guarded_forecast, seasonal_naive,
};

const QUANTILES: [f32; 3] = [0.1, 0.5, 0.9];

/// A "model" that predicts `value` (normalized) at every level.
fn constant(value: f32) -> impl Fn(&SampleSet) -> Result<QuantileForecast, ModelError> + Copy {
    move |data: &SampleSet| {
        Ok(QuantileForecast {
            quantiles: QUANTILES.to_vec(),
            horizon: data.horizon,
            values: vec![value; data.len() * QUANTILES.len() * data.horizon],
        })
    }
}

/// A model that knows the future: each level is the actual value.
fn oracle(data: &SampleSet) -> Result<QuantileForecast, ModelError> {
    let mut values = Vec::new();
    for i in 0..data.len() {
        for _ in QUANTILES {
            values.extend_from_slice(data.y_row(i));
        }
    }
    Ok(QuantileForecast {
        quantiles: QUANTILES.to_vec(),
        horizon: data.horizon,
        values,
    })
}

#[test]
fn a_model_that_loses_to_seasonal_naive_falls_back_to_it() {
    let (train, test) = common::site("s", 120, 100, 168, 3);
    // A constant far from every value loses to yesterday's value.
    let decision = guard_site(&train, 0.2, &QUANTILES, constant(5.0)).unwrap();
    let SiteChoice::SeasonalNaive(season) = decision.choice else {
        panic!("expected a fallback, got {decision:?}");
    };
    assert!(decision.fell_back());
    assert!(decision.naive_mae < decision.learned_mae);
    assert_eq!(decision.naive_offsets.len(), QUANTILES.len());
    assert!(decision.naive_offsets.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(
        decision.naive_offsets[1], 0.0,
        "the median stays the naive value"
    );
    // The served forecast of the test days is that naive forecast with its residual band.
    let served = guarded_forecast(&decision, &test, &QUANTILES, constant(5.0)).unwrap();
    let naive = seasonal_naive(&test, season).unwrap();
    served.check_matches(&test).unwrap();
    for i in 0..test.len() {
        for h in 0..test.horizon {
            assert_eq!(served.value(i, 1, h), naive.value(i, 0, h));
            assert!(served.value(i, 0, h) <= served.value(i, 1, h));
            assert!(served.value(i, 1, h) <= served.value(i, 2, h));
        }
    }
    // The validation days, not the test days, decide: a validation split of the latest 20%
    // of training origins sees none of `test`.
    assert!(decision.validation_samples > 0 && decision.validation_samples < train.len());
}

#[test]
fn a_model_that_beats_seasonal_naive_is_kept() {
    let (train, test) = common::site("s", 120, 100, 168, 4);
    let decision = guard_site(&train, 0.2, &QUANTILES, oracle).unwrap();
    assert_eq!(decision.choice, SiteChoice::Learned);
    assert_eq!(decision.learned_mae, 0.0);
    assert!(decision.naive_mae > 0.0);
    assert!(decision.naive_offsets.is_empty());
    let served = guarded_forecast(&decision, &test, &QUANTILES, oracle).unwrap();
    assert_eq!(served, oracle(&test).unwrap());
}

#[test]
fn a_short_context_only_offers_the_day_and_a_weekly_load_picks_the_week() {
    // A context of one day allows only "same hour yesterday".
    let (train, _) = common::site("s", 60, 50, 24, 5);
    let decision = guard_site(&train, 0.2, &QUANTILES, constant(7.0)).unwrap();
    assert_eq!(decision.choice, SiteChoice::SeasonalNaive(Season::Day));
    // With a week of context, a load with a weekday/weekend level is better predicted by
    // last week than by yesterday (Mondays and Saturdays), so the week is chosen.
    let (train, _) = common::site("s", 120, 100, 168, 5);
    let decision = guard_site(&train, 0.2, &QUANTILES, constant(7.0)).unwrap();
    assert_eq!(decision.choice, SiteChoice::SeasonalNaive(Season::Week));
}

#[test]
fn a_decision_for_other_quantiles_is_refused() {
    let (train, test) = common::site("s", 120, 100, 168, 6);
    let decision = guard_site(&train, 0.2, &QUANTILES, constant(5.0)).unwrap();
    let err = guarded_forecast(&decision, &test, &[0.5], constant(5.0)).unwrap_err();
    assert!(err.to_string().contains("quantile offsets"), "{err}");
}
