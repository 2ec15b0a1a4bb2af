//! Bare inference time of one single-site day-ahead forecast through
//! `ServingModel::forecast` (request checks, features, normalization, the MLP, kW output):
//! the baseline the forecast service's end-to-end benchmark compares against. The bare
//! network forward pass on the same input row is measured alongside, so the ratio shows
//! what the serving layer adds.

use criterion::{Criterion, criterion_group, criterion_main};
use datasets::synth::{FleetConfig, generate_fleet};
use datasets::window::feature_count;
use datasets::{Resolution, Target};
use models::serving::{
    Covariate, CovariateSeries, ForecastRequest, FutureCovariates, History, ServedSite,
    ServingModel, ServingSpec,
};
use models::{ForecasterConfig, QuantileForecaster};

const DAY: usize = 24;
const CONTEXT: usize = 7 * DAY;

/// A request for the last day of a 60-day synthetic hourly prosumer site.
fn request(target: Target, history_steps: usize) -> ForecastRequest {
    let fleet = generate_fleet(&FleetConfig {
        sites: 1,
        days: 60,
        resolution: Resolution::Hour,
        ..FleetConfig::default()
    });
    let (site, t) = (&fleet.sites[0], &fleet.telemetry[0]);
    let origin = t.len() - DAY;
    let values = |column: &Option<Vec<Option<f64>>>, range: std::ops::Range<usize>| -> Vec<f64> {
        column.as_ref().expect("column")[range]
            .iter()
            .map(|v| v.expect("value"))
            .collect()
    };
    let target_column = &target.values(t).cloned();
    let future = origin..origin + DAY;
    ForecastRequest {
        site: ServedSite {
            kind: site.kind,
            latitude: site.latitude,
            longitude: site.longitude,
            capacity_kw: site.capacity_kw,
            timezone: site.timezone.clone(),
        },
        target,
        resolution: Resolution::Hour,
        origin_unix_s: t.timestamps[origin],
        horizon_steps: DAY,
        history: History {
            timestamps_unix_s: t.timestamps[origin - history_steps..origin].to_vec(),
            values_kw: values(target_column, origin - history_steps..origin),
        },
        future: FutureCovariates {
            timestamps_unix_s: t.timestamps[future.clone()].to_vec(),
            covariates: [
                (Covariate::TemperatureForecast, &t.temperature_forecast_c),
                (Covariate::GhiForecast, &t.ghi_forecast_w_m2),
                (Covariate::CloudCoverForecast, &t.cloud_cover_forecast),
            ]
            .into_iter()
            .map(|(c, column)| CovariateSeries {
                name: c.name().to_string(),
                values: values(column, future.clone()),
            })
            .collect(),
        },
        site_normalization: None,
        absent_covariates: Vec::new(),
    }
}

fn serving(c: &mut Criterion) {
    let mut group = c.benchmark_group("serving");
    for target in [Target::Load, Target::Pv] {
        // The day-ahead architecture of each target with untrained (seeded) weights: the
        // cost of a forward pass does not depend on the weights' values.
        let config = ForecasterConfig::day_ahead(target, feature_count(CONTEXT, DAY), DAY);
        let spec = ServingSpec::new(
            target,
            Resolution::Hour,
            CONTEXT,
            config.clone(),
            Covariate::ALL.to_vec(),
        )
        .expect("spec");
        let params = models::to_flat(&config.init(&models::inference_device()).expect("init"))
            .expect("flat");
        let model = ServingModel::new(spec.clone(), &params).expect("model");
        let req = request(target, spec.history_steps(false));
        let name = format!("{target:?}").to_lowercase();
        group.bench_function(format!("forecast_24h_{name}"), |b| {
            b.iter(|| {
                model
                    .forecast(std::hint::black_box(&req))
                    .expect("forecast")
            });
        });
        let forecaster = QuantileForecaster::from_flat(config, &params).expect("forecaster");
        let row = vec![0.1f32; feature_count(CONTEXT, DAY)];
        group.bench_function(format!("network_forward_{name}"), |b| {
            b.iter(|| {
                forecaster
                    .predict_rows(std::hint::black_box(&row))
                    .expect("forward")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, serving);
criterion_main!(benches);
