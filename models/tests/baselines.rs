//! Baseline forecasts on hand-built contexts.

use datasets::{Normalization, SampleSet};
use models::{Climatology, ModelError, Season, hour_of_week, persistence, seasonal_naive};

const MONDAY: i64 = 1_704_067_200; // 2024-01-01 00:00 UTC
const WEEK: i64 = 7 * 86_400;

/// One sample whose context holds 0, 1, ..., context-1 (normalized).
fn ramp(context: usize, horizon: usize) -> SampleSet {
    SampleSet {
        n_features: context,
        context,
        horizon,
        step_seconds: 3_600,
        x: (0..context).map(|v| v as f32).collect(),
        y: vec![0.0; horizon],
        daylight: vec![true; horizon],
        origins: vec![MONDAY],
        sites: vec![0],
        site_ids: vec!["a".into()],
        normalizations: vec![Normalization {
            offset_kw: 0.0,
            scale_kw: 1.0,
        }],
    }
}

#[test]
fn persistence_repeats_the_last_value() {
    let f = persistence(&ramp(48, 4)).unwrap();
    assert_eq!(f.values, vec![47.0; 4]);
    assert!(f.is_point());
}

#[test]
fn seasonal_naive_takes_the_same_hour_a_season_back() {
    let f = seasonal_naive(&ramp(48, 30), Season::Day).unwrap();
    let expected: Vec<f32> = (0..30)
        .map(|h| if h < 24 { 24 + h } else { h } as f32)
        .collect();
    assert_eq!(f.values, expected);
    let week = seasonal_naive(&ramp(168, 24), Season::Week).unwrap();
    assert_eq!(week.values, (0..24).map(|h| h as f32).collect::<Vec<_>>());
}

#[test]
fn seasonal_naive_rejects_a_short_context() {
    match seasonal_naive(&ramp(48, 24), Season::Week) {
        Err(ModelError::ContextTooShort {
            needed, context, ..
        }) => assert_eq!((needed, context), (168, 48)),
        other => panic!("expected ContextTooShort, got {other:?}"),
    }
    // A 30-step horizon with a daily season needs two days of context.
    assert!(matches!(
        seasonal_naive(&ramp(47, 30), Season::Day),
        Err(ModelError::ContextTooShort { needed: 48, .. })
    ));
}

#[test]
fn hour_of_week_is_monday_based_utc() {
    assert_eq!(hour_of_week(MONDAY), 0);
    assert_eq!(hour_of_week(MONDAY + 3_600 + 59), 1);
    assert_eq!(hour_of_week(MONDAY - 3_600), 167);
    assert_eq!(hour_of_week(0), 72); // 1970-01-01 was a Thursday
    assert_eq!(hour_of_week(-3_600), 71);
}

#[test]
fn climatology_averages_per_hour_of_week_in_kw() {
    let norm = Normalization {
        offset_kw: 0.0,
        scale_kw: 1.0,
    };
    let train = SampleSet {
        n_features: 1,
        context: 1,
        horizon: 2,
        step_seconds: 3_600,
        x: vec![0.0, 0.0],
        y: vec![1.0, 2.0, 3.0, 4.0],
        daylight: vec![true; 4],
        origins: vec![MONDAY, MONDAY + WEEK],
        sites: vec![0, 0],
        site_ids: vec!["a".into()],
        normalizations: vec![norm],
    };
    let climatology = Climatology::fit(std::slice::from_ref(&train)).unwrap();
    let mut test = ramp(1, 3);
    test.origins = vec![MONDAY + 2 * WEEK];
    // Test normalization differs: predictions come back in its units (kW / 2).
    test.normalizations = vec![Normalization {
        offset_kw: 0.0,
        scale_kw: 2.0,
    }];
    let f = climatology.predict(&test).unwrap();
    assert_eq!(f.values, vec![1.0, 1.5, 1.25]); // hour 0: 2 kW, hour 1: 3 kW, unseen: mean 2.5 kW
    test.site_ids = vec!["b".into()];
    assert!(matches!(climatology.predict(&test), Err(ModelError::UnknownSite(s)) if s == "b"));
}
