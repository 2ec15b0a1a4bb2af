//! Learnable sample sets with the real `datasets` feature layout, built from a noisy daily
//! and weekly load shape, for tests and benchmarks that must not wait on a synthetic fleet.

#![allow(dead_code)]

use datasets::window::feature_count;
use datasets::{Normalization, SampleSet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const HOUR: i64 = 3_600;
/// Monday 2024-01-01 00:00 UTC.
pub const START: i64 = 1_704_067_200;

/// An hourly series: a daily cycle, a weekday/weekend level and AR(1) noise, in kW.
pub fn hourly_load_kw(days: usize, amplitude: f32, noise: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ar = 0.0f32;
    (0..days * 24)
        .map(|t| {
            let hour = (t % 24) as f32;
            let weekday = (t / 24) % 7 < 5;
            ar = 0.6 * ar + noise * (rng.random::<f32>() - 0.5);
            let daily = amplitude * (2.0 * std::f32::consts::PI * (hour - 6.0) / 24.0).sin();
            50.0 + daily + if weekday { 10.0 } else { 0.0 } + ar
        })
        .collect()
}

/// Windows over `series` (hourly from `START`) with origins every `stride` hours, in the
/// layout of `datasets::window::build_samples`: context lags, 7 known-future features per
/// horizon step (only hour of day and workday informative here), 4 origin features.
pub fn windows(
    site: &str,
    series: &[f32],
    context: usize,
    horizon: usize,
    stride: usize,
    norm: Normalization,
) -> SampleSet {
    let mut set = SampleSet {
        n_features: feature_count(context, horizon),
        context,
        horizon,
        step_seconds: HOUR,
        site_ids: vec![site.to_string()],
        normalizations: vec![norm],
        ..SampleSet::default()
    };
    let mut origin = context;
    while origin + horizon <= series.len() {
        set.x.extend(
            series[origin - context..origin]
                .iter()
                .map(|&v| norm.normalize(v)),
        );
        for t in origin..origin + horizon {
            let angle = 2.0 * std::f32::consts::PI * (t % 24) as f32 / 24.0;
            let workday = if (t / 24) % 7 < 5 { 1.0 } else { 0.0 };
            set.x
                .extend_from_slice(&[0.0, 0.0, 0.0, 0.0, angle.sin(), angle.cos(), workday]);
        }
        let dow = 2.0 * std::f32::consts::PI * ((origin / 24) % 7) as f32 / 7.0;
        set.x.extend_from_slice(&[0.0, 1.0, dow.sin(), dow.cos()]);
        set.y.extend(
            series[origin..origin + horizon]
                .iter()
                .map(|&v| norm.normalize(v)),
        );
        set.daylight.extend(std::iter::repeat_n(true, horizon));
        set.origins.push(START + origin as i64 * HOUR);
        set.sites.push(0);
        origin += stride;
    }
    set
}

/// A site's train and test sets: the first `train_days` days for training (every hour an
/// origin), the rest for testing (one origin per day), normalized by the training mean/std.
pub fn site(
    site: &str,
    days: usize,
    train_days: usize,
    context: usize,
    seed: u64,
) -> (SampleSet, SampleSet) {
    let series = hourly_load_kw(days, 20.0, 8.0, seed);
    let split = train_days * 24;
    let train_part = &series[..split];
    let mean = train_part.iter().sum::<f32>() / train_part.len() as f32;
    let var = train_part.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / train_part.len() as f32;
    let norm = Normalization {
        offset_kw: mean,
        scale_kw: var.sqrt(),
    };
    let train = windows(site, train_part, context, 24, 1, norm);
    let test = windows(site, &series[split - context..], context, 24, 24, norm);
    (train, test)
}
