//! Data-layer throughput: the synthetic fleet generator, Parquet round trip and windowing.
//!
//! `cargo bench --bench foundation`. The generator of 50 sites x 365 days hourly is the
//! figure issue 2 asks for; the windowing bench shows what preparing a fleet costs next to it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use datasets::synth::{FleetConfig, generate_fleet};
use datasets::{Resolution, SplitSpec, Target, prepare_fleet};

fn fleet_config(sites: usize) -> FleetConfig {
    FleetConfig {
        sites,
        days: 365,
        resolution: Resolution::Hour,
        seed: 7,
        ..FleetConfig::default()
    }
}

fn generator(c: &mut Criterion) {
    let mut group = c.benchmark_group("synth");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("50 sites x 365 days hourly", |b| {
        b.iter(|| black_box(generate_fleet(&fleet_config(50))))
    });
    group.finish();
}

fn parquet_and_windows(c: &mut Criterion) {
    let fleet = generate_fleet(&fleet_config(20));
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut group = c.benchmark_group("fleet io");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("write 20 sites x 365 days", |b| {
        b.iter(|| {
            datasets::writer::write_fleet_dir(dir.path(), &fleet.sites, &fleet.telemetry)
                .expect("write fleet")
        })
    });
    group.bench_function("read + validate 20 sites x 365 days", |b| {
        b.iter(|| black_box(datasets::reader::read_fleet_dir(dir.path()).expect("read fleet")))
    });
    let series = fleet.regular_series();
    group.bench_function("window load, 20 sites, L=168 H=24", |b| {
        b.iter(|| {
            black_box(
                prepare_fleet(
                    &fleet.sites,
                    &series,
                    Target::Load,
                    SplitSpec::day_ahead(24),
                )
                .expect("prepare"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, generator, parquet_and_windows);
criterion_main!(benches);
