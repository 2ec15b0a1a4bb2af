//! Metric values on hand-computed examples.

use datasets::{Normalization, SampleSet};
use models::{ErrorSums, QuantileForecast, StepSelection, site_errors};

/// One sample, horizon 2, normalized targets [1, 3] with kW = 10 + 2 * value.
fn one_sample() -> SampleSet {
    SampleSet {
        n_features: 1,
        context: 1,
        horizon: 2,
        step_seconds: 3_600,
        x: vec![0.0],
        y: vec![1.0, 3.0],
        daylight: vec![false, true],
        origins: vec![0],
        sites: vec![0],
        site_ids: vec!["a".into()],
        normalizations: vec![Normalization {
            offset_kw: 10.0,
            scale_kw: 2.0,
        }],
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-6, "{a} != {b}");
}

#[test]
fn quantile_forecast_scores_by_hand() {
    let data = one_sample();
    // [sample][level][step]: p10 = [0, 2], p50 = [1.5, 2.5], p90 = [2, 2.8] (normalized).
    let forecast = QuantileForecast {
        quantiles: vec![0.1, 0.5, 0.9],
        horizon: 2,
        values: vec![0.0, 2.0, 1.5, 2.5, 2.0, 2.8],
    };
    let sums = site_errors(&data, &forecast, StepSelection::All).unwrap();
    let m = sums[0].metrics();
    // Median errors in kW: 2 * (1 - 1.5) = -1, 2 * (3 - 2.5) = 1; actuals 12 and 16 kW.
    assert_eq!(m.steps, 2);
    close(m.mae_kw, 1.0);
    close(m.rmse_kw, 1.0);
    close(m.nmae, 1.0 / 14.0);
    close(m.nrmse, 1.0 / 14.0);
    // Normalized pinball per step: (0.1 + 0.25 + 0.1) / 3 and (0.1 + 0.25 + 0.18) / 3; x2 for kW.
    close(m.pinball_kw, 2.0 * (0.45 / 3.0 + 0.53 / 3.0) / 2.0);
    // 12 kW lies in [10, 14]; 16 kW is above [14, 15.6].
    close(m.coverage.unwrap(), 0.5);

    let day = site_errors(&data, &forecast, StepSelection::Daylight).unwrap()[0].metrics();
    assert_eq!(day.steps, 1);
    close(day.mae_kw, 1.0);
    close(day.nmae, 1.0 / 16.0);
    close(day.pinball_kw, 2.0 * 0.53 / 3.0);
    close(day.coverage.unwrap(), 0.0);
}

#[test]
fn point_forecast_pinball_is_half_mae_and_skill_compares_maes() {
    let data = one_sample();
    let point = QuantileForecast::point(2, vec![1.0, 1.0]); // 12 kW both steps: errors 0 and 4 kW
    let m = site_errors(&data, &point, StepSelection::All).unwrap()[0].metrics();
    close(m.mae_kw, 2.0);
    close(m.rmse_kw, 8f64.sqrt());
    close(m.pinball_kw, 1.0);
    assert_eq!(m.coverage, None);
    let better = QuantileForecast::point(2, vec![1.0, 2.5]); // errors 0 and 1 kW
    let b = site_errors(&data, &better, StepSelection::All).unwrap()[0].metrics();
    close(b.skill_vs(&m), 1.0 - 0.5 / 2.0);
}

#[test]
fn pooling_merges_sums_not_averages() {
    let mut a = ErrorSums::default();
    a.add(10.0, &[8.0], &[0.5], 0); // |e| = 2
    let mut b = ErrorSums::default();
    b.add(100.0, &[90.0], &[0.5], 0); // |e| = 10
    b.add(100.0, &[100.0], &[0.5], 0); // |e| = 0
    let pooled = ErrorSums::pooled([&a, &b]).metrics();
    assert_eq!(pooled.steps, 3);
    close(pooled.mae_kw, 4.0);
    close(pooled.nmae, 12.0 / 210.0);
}

#[test]
fn mismatched_forecast_is_a_typed_error() {
    let data = one_sample();
    let short = QuantileForecast::point(2, vec![1.0]);
    assert!(matches!(
        site_errors(&data, &short, StepSelection::All),
        Err(models::ModelError::LayoutMismatch(_))
    ));
    let mut broken = one_sample();
    broken.y.pop();
    assert!(matches!(
        site_errors(
            &broken,
            &QuantileForecast::point(2, vec![0.0, 0.0]),
            StepSelection::All
        ),
        Err(models::ModelError::InvalidSamples(_))
    ));
}
