//! Training throughput of the quantile MLP (samples per second through forward, backward and
//! the Adam step), with the ridge fit on the same samples measured alongside as the baseline.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datasets::Target;
use models::{ForecasterConfig, RidgeConfig, RidgeForecaster, train_local};

#[path = "../tests/common/mod.rs"]
mod common;

fn training(c: &mut Criterion) {
    // One site-year of hourly windows with a week of context and a day-ahead horizon: the
    // shape of one participant's local data in the synthetic fleet.
    let (train, _) = common::site("bench", 365, 300, 168, 7);
    let mut group = c.benchmark_group("training");
    group.sample_size(10);
    group.throughput(Throughput::Elements(train.len() as u64));
    for target in [Target::Load, Target::Pv] {
        let config = ForecasterConfig::day_ahead(target, train.n_features, train.horizon);
        let initial = config
            .init(&models::training_device())
            .and_then(|m| models::to_flat(&m))
            .expect("init");
        let widths: Vec<String> = config.hidden.iter().map(usize::to_string).collect();
        let name = format!("mlp_one_epoch_{target:?}_{}", widths.join("x")).to_lowercase();
        group.bench_function(name, |b| {
            b.iter(|| train_local(&config, &initial, &train, 1).expect("local epoch"));
        });
    }
    group.bench_function("ridge_fit", |b| {
        b.iter(|| RidgeForecaster::fit(&RidgeConfig::default(), &train).expect("ridge"));
    });
    group.finish();
}

criterion_group!(benches, training);
criterion_main!(benches);
