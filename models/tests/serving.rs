//! Serving reproduces the training features: a model trained on a synthetic site forecasts a
//! request built from that site's data exactly as the evaluation path forecasts the same
//! origin, in kW with ordered quantiles, and every malformed request gets its own error.

use datasets::prepare::prepare_site;
use datasets::synth::{FleetConfig, generate_fleet};
use datasets::window::{OriginRange, build_samples};
use datasets::{
    Normalization, PreparedSite, RegularSeries, Resolution, SplitSpec, Target, WindowSpec,
};
use models::serving::{
    Covariate, CovariateSeries, ForecastRequest, FutureCovariates, History,
    LOAD_NORMALIZATION_DAYS, QuantileForecast, ServedSite, ServingError, ServingModel, ServingSpec,
};
use models::{
    ForecasterConfig, ModelArtifact, QuantileForecaster, TrainedForecaster, TrainingMode, train,
};

const DAY: usize = 24;
const CONTEXT: usize = 7 * DAY;

struct Served {
    model: ServingModel,
    forecaster: QuantileForecaster,
    trained: TrainedForecaster,
    prepared: PreparedSite,
    series: RegularSeries,
}

/// A small model for `target` trained on the first 31 of 42 days of a synthetic prosumer
/// (load and PV metered), hourly, a week of context and a day-ahead horizon.
fn served(target: Target) -> Served {
    let fleet = generate_fleet(&FleetConfig {
        sites: 1,
        days: 42,
        resolution: Resolution::Hour,
        seed: 11,
        ..FleetConfig::default()
    });
    let mut series = fleet.regular_series().remove(0);
    let site = &fleet.sites[0];
    assert!(site.kind.has_load() && site.kind.has_pv());
    // What the prosumer's utility meter reads: import minus export.
    let t = &mut series.telemetry;
    let net: Vec<Option<f64>> = t
        .load_kw
        .iter()
        .flatten()
        .zip(t.pv_kw.iter().flatten())
        .map(|(load, pv)| Some(load.unwrap() - pv.unwrap()))
        .collect();
    t.net_load_kw = Some(net);
    let mut split = SplitSpec::day_ahead(DAY);
    split.test_fraction = 0.25;
    let prepared = prepare_site(&series, site, target, split).unwrap().unwrap();
    let config = ForecasterConfig::day_ahead(target, prepared.train.n_features, DAY)
        .with_hidden(vec![32])
        .with_epochs(3);
    let trained = train(&config, &prepared.train).unwrap();
    let covariates = Covariate::present_in([&series.telemetry]);
    assert_eq!(covariates, Covariate::ALL.to_vec());
    let spec = ServingSpec::new(target, Resolution::Hour, CONTEXT, config, covariates).unwrap();
    let model = ServingModel::from_forecaster(spec, trained.forecaster.clone()).unwrap();
    Served {
        model,
        forecaster: trained.forecaster.clone(),
        trained,
        prepared,
        series,
    }
}

fn column<'a>(series: &'a RegularSeries, name: &str) -> &'a [Option<f64>] {
    let (_, values) = series
        .telemetry
        .columns()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap();
    values.unwrap()
}

/// What a market engine would send for the origin at grid index `origin` of the series.
fn request(s: &Served, origin: usize, history_steps: usize) -> ForecastRequest {
    let (site, series) = (&s.prepared.site, &s.series);
    let spec = s.model.spec();
    let ts = &series.telemetry.timestamps;
    let target = column(series, spec.target.column());
    let future = origin..origin + spec.horizon;
    ForecastRequest {
        site: ServedSite {
            kind: site.kind,
            latitude: site.latitude,
            longitude: site.longitude,
            capacity_kw: site.capacity_kw,
            timezone: site.timezone.clone(),
        },
        target: spec.target,
        resolution: Resolution::Hour,
        origin_unix_s: ts[origin],
        horizon_steps: spec.horizon,
        history: History {
            timestamps_unix_s: ts[origin - history_steps..origin].to_vec(),
            values_kw: target[origin - history_steps..origin]
                .iter()
                .map(|v| v.unwrap())
                .collect(),
        },
        future: FutureCovariates {
            timestamps_unix_s: ts[future.clone()].to_vec(),
            covariates: spec
                .covariates
                .iter()
                .map(|c| CovariateSeries {
                    name: c.name().to_string(),
                    values: column(series, c.name())[future.clone()]
                        .iter()
                        .map(|v| v.unwrap())
                        .collect(),
                })
                .collect(),
        },
        site_normalization: None,
        absent_covariates: Vec::new(),
    }
}

/// The evaluation path's forecast of sample `i` of `set` in kW, clipped as serving clips.
fn evaluated(s: &Served, set: &datasets::SampleSet, i: usize) -> Vec<Vec<f32>> {
    let kw = s.forecaster.predict(set).unwrap().to_kw(set).unwrap();
    let capacity = s.prepared.site.capacity_kw as f32;
    (0..kw.quantiles.len())
        .map(|level| {
            (0..kw.horizon)
                .map(|step| match s.model.spec().target {
                    Target::Pv if !set.daylight[i * kw.horizon + step] => 0.0,
                    Target::Pv => kw.value(i, level, step).clamp(0.0, capacity),
                    Target::Load | Target::NetLoad => kw.value(i, level, step),
                })
                .collect()
        })
        .collect()
}

fn assert_close(served: &[Vec<f32>], expected: &[Vec<f32>]) {
    assert_eq!(served.len(), expected.len());
    for (a, b) in served.iter().flatten().zip(expected.iter().flatten()) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "served {a} kW, evaluation path {b} kW"
        );
    }
}

/// The training-side load window of `series` whose first forecast step is `origin_unix_s`.
fn one_window(
    series: &RegularSeries,
    site: &datasets::SiteMetadata,
    origin_unix_s: i64,
    norm: Normalization,
) -> datasets::SampleSet {
    let spec = WindowSpec {
        context: CONTEXT,
        horizon: DAY,
        stride: 1,
    };
    let range = OriginRange {
        from: origin_unix_s,
        until: origin_unix_s + DAY as i64 * 3600,
    };
    build_samples(series, site, Target::Load, spec, norm, range).unwrap()
}

fn index_of(s: &Served, unix_s: i64) -> usize {
    s.series.index_of(unix_s).unwrap()
}

fn assert_well_formed(f: &QuantileForecast, request: &ForecastRequest) {
    let steps = request.horizon_steps;
    let expected: Vec<i64> = (0..steps as i64)
        .map(|s| request.origin_unix_s + s * 3600)
        .collect();
    assert_eq!(f.timestamps_unix_s, expected);
    assert_eq!(f.levels, vec![0.1, 0.5, 0.9]);
    assert_eq!(f.values_kw.len(), f.levels.len());
    assert!(f.values_kw.iter().all(|row| row.len() == steps));
    for step in 0..steps {
        for level in 1..f.levels.len() {
            assert!(
                f.values_kw[level - 1][step] <= f.values_kw[level][step],
                "quantiles cross at step {step}"
            );
        }
    }
    assert!(f.values_kw.iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn pv_forecast_equals_the_evaluation_path_and_stays_within_capacity() {
    let s = served(Target::Pv);
    let test = &s.prepared.test;
    assert!(test.len() >= 3);
    for i in [0, test.len() - 1] {
        let origin = index_of(&s, test.origins[i]);
        let req = request(&s, origin, CONTEXT);
        let forecast = s.model.forecast(&req).unwrap();
        assert_well_formed(&forecast, &req);
        assert_close(&forecast.values_kw, &evaluated(&s, test, i));
        let capacity = s.prepared.site.capacity_kw as f32;
        assert!(
            forecast
                .values_kw
                .iter()
                .flatten()
                .all(|&v| (0.0..=capacity).contains(&v))
        );
        // Night steps are exactly zero at every level, and there are some in a day.
        let night: Vec<usize> = (0..test.horizon)
            .filter(|&h| !test.daylight[i * test.horizon + h])
            .collect();
        assert!(!night.is_empty());
        for h in night {
            assert!(
                forecast.values_kw.iter().all(|row| row[h] == 0.0),
                "step {h}"
            );
        }
    }
}

#[test]
fn load_forecast_with_the_site_normalization_equals_the_evaluation_path() {
    let s = served(Target::Load);
    let test = &s.prepared.test;
    assert_served_with_site_normalization(&s, test.len() - 1);
}

/// Sample `i` of the test set served with the site's own normalization: well formed and equal
/// to the evaluation path.
fn assert_served_with_site_normalization(s: &Served, i: usize) {
    let test = &s.prepared.test;
    let origin = index_of(s, test.origins[i]);
    let mut req = request(s, origin, CONTEXT);
    req.site_normalization = Some(test.normalizations[0]);
    let forecast = s.model.forecast(&req).unwrap();
    assert_well_formed(&forecast, &req);
    assert_close(&forecast.values_kw, &evaluated(s, test, i));
}

#[test]
fn net_load_forecast_equals_the_unclamped_evaluation_path() {
    let s = served(Target::NetLoad);
    let test = &s.prepared.test;
    // The site exports at noon on sunny days: its net load has negative readings.
    let net = s.series.telemetry.net_load_kw.as_ref().unwrap();
    assert!(net.iter().flatten().any(|&v| v < 0.0));
    for i in 0..test.len() {
        assert_served_with_site_normalization(&s, i);
    }
}

#[test]
fn load_forecast_normalized_on_its_history_equals_windows_built_with_that_normalization() {
    let s = served(Target::Load);
    let origin = index_of(&s, *s.prepared.test.origins.last().unwrap()) - 5;
    let trailing = LOAD_NORMALIZATION_DAYS * DAY;
    let req = request(&s, origin, trailing + 10);
    let forecast = s.model.forecast(&req).unwrap();
    assert_well_formed(&forecast, &req);

    // Training-side windows of the same data, scaled by the fit on the same trailing span.
    let load = column(&s.series, "load_kw");
    let norm = Normalization::fit(
        Target::Load,
        0.0,
        load[origin - trailing..origin].iter().flatten().copied(),
    )
    .unwrap();
    let origin_unix_s = s.series.telemetry.timestamps[origin];
    let set = one_window(&s.series, &s.prepared.site, origin_unix_s, norm);
    assert_eq!(set.origins, vec![origin_unix_s]);
    assert_close(&forecast.values_kw, &evaluated(&s, &set, 0));

    // A shorter horizon is a prefix of the full forecast.
    let mut short = req.clone();
    short.horizon_steps = 6;
    let prefix = s.model.forecast(&short).unwrap();
    assert_well_formed(&prefix, &short);
    for (p, full) in prefix.values_kw.iter().zip(&forecast.values_kw) {
        assert_eq!(p[..], full[..6]);
    }
}

/// A site with no weather feed (the columns absent, as in most operators' exports) trained
/// the weather model with those inputs at 0; served from its own data, which declares the
/// feeds absent, the model reads them as training did, and needs no future rows at all.
#[test]
fn a_site_without_weather_columns_is_served_as_it_trained() {
    let s = served(Target::Load);
    let mut dry = s.series.clone();
    dry.telemetry.temperature_forecast_c = None;
    dry.telemetry.ghi_forecast_w_m2 = None;
    dry.telemetry.cloud_cover_forecast = None;
    let site = &s.prepared.site;
    let origin = index_of(&s, *s.prepared.test.origins.last().unwrap()) - 5;
    let mut req =
        ForecastRequest::from_series(&dry, site, Target::Load, origin, DAY, (CONTEXT, DAY))
            .unwrap();
    let norm = s.prepared.test.normalizations[0];
    req.site_normalization = Some(norm);
    let mut absent = req.absent_covariates.clone();
    absent.sort();
    assert_eq!(absent, Covariate::ALL.to_vec());
    assert!(req.future.covariates.is_empty());
    let forecast = s.model.forecast(&req).unwrap();
    assert_well_formed(&forecast, &req);
    let origin_unix_s = dry.telemetry.timestamps[origin];
    let set = one_window(&dry, site, origin_unix_s, norm);
    assert_eq!(set.origins, vec![origin_unix_s]);
    assert_close(&forecast.values_kw, &evaluated(&s, &set, 0));
    // Different from the forecast with the weather it does have: the inputs mattered.
    let with_weather = s.model.forecast(&{
        let mut r = request(&s, origin, CONTEXT);
        r.site_normalization = Some(norm);
        r
    });
    assert_ne!(with_weather.unwrap().values_kw, forecast.values_kw);

    // From the end of its file: no future rows are needed without covariates to read.
    let end = dry.telemetry.timestamps.len();
    let mut live =
        ForecastRequest::from_series(&dry, site, Target::Load, end, DAY, (CONTEXT, DAY)).unwrap();
    live.site_normalization = Some(norm);
    let live_forecast = s.model.forecast(&live).unwrap();
    assert_well_formed(&live_forecast, &live);

    // Leaving the feeds out without declaring them absent is still refused by name, and a
    // feed both sent and declared absent too.
    let mut undeclared = req.clone();
    undeclared.absent_covariates.clear();
    assert!(matches!(
        s.model.forecast(&undeclared).unwrap_err(),
        ServingError::MissingCovariate { .. }
    ));
    let mut both = request(&s, origin, CONTEXT);
    both.site_normalization = Some(norm);
    both.absent_covariates = vec![Covariate::ALL[0]];
    let err = s.model.forecast(&both).unwrap_err();
    assert!(
        matches!(err, ServingError::DuplicateCovariate { .. }),
        "{err:?}"
    );
}

#[test]
fn an_artifact_serves_the_same_forecast_and_the_model_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ServingModel>();
    let s = served(Target::Pv);
    let artifact = ModelArtifact::from_trained(
        &s.trained,
        Target::Pv,
        &s.prepared.train,
        TrainingMode::Centralized,
        Default::default(),
    )
    .unwrap();
    let from_artifact =
        ServingModel::from_artifact(&artifact, s.model.spec().covariates.clone()).unwrap();
    assert_eq!(from_artifact.spec(), s.model.spec());
    let req = request(&s, index_of(&s, s.prepared.test.origins[0]), CONTEXT);
    assert_eq!(
        from_artifact.forecast(&req).unwrap(),
        s.model.forecast(&req).unwrap()
    );
    let params = s.forecaster.to_flat().unwrap();
    let rebuilt = ServingModel::new(s.model.spec().clone(), &params).unwrap();
    assert_eq!(
        rebuilt.forecast(&req).unwrap(),
        s.model.forecast(&req).unwrap()
    );
}

fn refused(s: &Served, req: &ForecastRequest) -> ServingError {
    s.model.forecast(req).unwrap_err()
}

#[test]
fn each_malformed_request_gets_its_own_error() {
    let s = served(Target::Load);
    let origin = index_of(&s, *s.prepared.test.origins.last().unwrap());
    let full = LOAD_NORMALIZATION_DAYS * DAY;
    let good = request(&s, origin, full);
    s.model.forecast(&good).unwrap();
    let with = |change: &dyn Fn(&mut ForecastRequest)| {
        let mut req = good.clone();
        change(&mut req);
        refused(&s, &req)
    };

    let e = with(&|r| r.target = Target::Pv);
    assert!(
        matches!(
            e,
            ServingError::TargetMismatch {
                model: Target::Load,
                request: Target::Pv
            }
        ),
        "{e}"
    );
    let e = with(&|r| r.site.kind = datasets::SiteKind::PvPlant);
    assert!(matches!(e, ServingError::SiteLacksTarget { .. }), "{e}");
    let e = with(&|r| r.site.timezone = "Mars/Olympus".into());
    assert!(
        matches!(
            e,
            ServingError::InvalidSite {
                field: "timezone",
                ..
            }
        ),
        "{e}"
    );
    let e = with(&|r| r.resolution = Resolution::Min15);
    assert!(matches!(e, ServingError::ResolutionMismatch { .. }), "{e}");

    // Feature set: a covariate the model never saw, one it reads missing, one twice.
    let e = with(&|r| {
        r.future.covariates.push(CovariateSeries {
            name: "wind_speed_forecast".into(),
            values: vec![1.0; DAY],
        })
    });
    assert!(
        matches!(&e, ServingError::UnknownCovariate { name, .. } if name == "wind_speed_forecast"),
        "{e}"
    );
    assert!(e.to_string().contains("ghi_forecast_w_m2"), "{e}");
    let e = with(&|r| {
        r.future
            .covariates
            .retain(|c| c.name != "ghi_forecast_w_m2")
    });
    assert!(
        matches!(
            e,
            ServingError::MissingCovariate {
                name: "ghi_forecast_w_m2"
            }
        ),
        "{e}"
    );
    let e = with(&|r| {
        let again = r.future.covariates[0].clone();
        r.future.covariates.push(again)
    });
    assert!(matches!(e, ServingError::DuplicateCovariate { .. }), "{e}");

    // History length: four weeks to fit the load scaling, one week with the site's own.
    let e = with(&|r| {
        r.history.timestamps_unix_s.drain(..100);
        r.history.values_kw.drain(..100);
    });
    assert!(
        matches!(e, ServingError::HistoryTooShort { have, need, .. } if have == full - 100 && need == full),
        "{e}"
    );
    assert!(e.to_string().contains("672 steps (672 h)"), "{e}");
    let e = with(&|r| {
        r.site_normalization = Some(Normalization {
            offset_kw: 1.0,
            scale_kw: 1.0,
        });
        r.history.timestamps_unix_s.drain(..full - CONTEXT + 1);
        r.history.values_kw.drain(..full - CONTEXT + 1);
    });
    assert!(
        matches!(e, ServingError::HistoryTooShort { need: CONTEXT, .. }),
        "{e}"
    );

    // Non-finite inputs name the field and row.
    let e = with(&|r| r.history.values_kw[5] = f64::NAN);
    assert!(
        matches!(&e, ServingError::NonFinite { field, row: 5, .. } if field == "history.values_kw"),
        "{e}"
    );
    let e = with(&|r| r.future.covariates[1].values[3] = f64::INFINITY);
    assert!(
        matches!(&e, ServingError::NonFinite { field, row: 3, .. } if *field == format!("future.{}", good.future.covariates[1].name)),
        "{e}"
    );
    let e = with(&|r| {
        r.history.values_kw.pop();
    });
    assert!(matches!(e, ServingError::LengthMismatch { .. }), "{e}");

    // Covariates in the schema's units: cloud cover in percent and temperature in kelvin are
    // refused naming field, row and the unit expected.
    let slot = |name: &str| {
        good.future
            .covariates
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("the request carries {name}"))
    };
    let cloud = slot("cloud_cover_forecast");
    let e = with(&|r| r.future.covariates[cloud].values[2] = 55.0);
    assert!(
        matches!(&e, ServingError::Implausible { field, row: 2, .. } if field == "future.cloud_cover_forecast"),
        "{e}"
    );
    assert!(e.to_string().contains("divide percent by 100"), "{e}");
    let temperature = slot("temperature_forecast_c");
    let e = with(&|r| r.future.covariates[temperature].values[0] = 291.2);
    assert!(
        matches!(&e, ServingError::Implausible { row: 0, .. }) && e.to_string().contains("degC"),
        "{e}"
    );

    // Timestamps: off the grid, not increasing, gaps, not meeting the origin.
    let e = with(&|r| r.history.timestamps_unix_s[3] += 60);
    assert!(
        matches!(
            e,
            ServingError::OffGrid {
                field: "history.timestamps_unix_s",
                row: 3,
                ..
            }
        ),
        "{e}"
    );
    let e = with(&|r| r.history.timestamps_unix_s[4] = r.history.timestamps_unix_s[3]);
    assert!(
        matches!(e, ServingError::NotIncreasing { row: 4, .. }),
        "{e}"
    );
    let e = with(&|r| {
        r.history.timestamps_unix_s.remove(10);
        r.history.values_kw.remove(10);
    });
    assert!(matches!(e, ServingError::Gap { row: 10, .. }), "{e}");
    let e = with(&|r| r.future.timestamps_unix_s[2] += 1800);
    assert!(
        matches!(
            e,
            ServingError::OffGrid {
                field: "future.timestamps_unix_s",
                row: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = with(&|r| r.origin_unix_s += 60);
    assert!(matches!(e, ServingError::OriginOffGrid { .. }), "{e}");
    let e = with(&|r| {
        r.history.timestamps_unix_s.pop();
        r.history.values_kw.pop();
    });
    assert!(matches!(e, ServingError::HistoryNotAtOrigin { .. }), "{e}");

    // Horizon: longer than the model's, and covariates not covering the model's horizon.
    let e = with(&|r| r.horizon_steps = DAY + 1);
    assert!(
        matches!(
            e,
            ServingError::HorizonOutOfRange {
                requested: 25,
                max: 24
            }
        ),
        "{e}"
    );
    let e = with(&|r| r.horizon_steps = 0);
    assert!(matches!(e, ServingError::HorizonOutOfRange { .. }), "{e}");
    let e = with(&|r| {
        r.horizon_steps = 12;
        r.future.timestamps_unix_s.truncate(12);
        r.future
            .covariates
            .iter_mut()
            .for_each(|c| c.values.truncate(12));
    });
    assert!(
        matches!(e, ServingError::FutureTooShort { have: 12, need: 24 }),
        "{e}"
    );
    let e = with(&|r| {
        r.future.timestamps_unix_s.clear();
        r.future
            .covariates
            .iter_mut()
            .for_each(|c| c.values.clear());
    });
    assert!(
        matches!(e, ServingError::FutureTooShort { have: 0, .. }),
        "{e}"
    );
    let e = with(&|r| {
        r.site_normalization = Some(Normalization {
            offset_kw: 0.0,
            scale_kw: 0.0,
        })
    });
    assert!(matches!(e, ServingError::InvalidNormalization(_)), "{e}");
}

#[test]
fn a_spec_must_match_the_network() {
    let config = ForecasterConfig::new(100, DAY);
    let err =
        ServingSpec::new(Target::Load, Resolution::Hour, CONTEXT, config, vec![]).unwrap_err();
    assert!(matches!(err, ServingError::InvalidSpec(_)), "{err}");
}
