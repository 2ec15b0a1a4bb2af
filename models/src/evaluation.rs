//! Fleet evaluation: every model against every baseline, per site and pooled, in kW.

use std::time::Instant;

use datasets::{SampleSet, SkippedSite, Target};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::baselines::{Climatology, Season, persistence, seasonal_naive};
use crate::config::ForecasterConfig;
use crate::forecast::QuantileForecast;
use crate::guard::{GuardDecision, guard_site, guarded_forecast};
use crate::metrics::{ErrorSums, ForecastMetrics, StepSelection, site_errors};
use crate::ridge::{RidgeConfig, RidgeForecaster};
use crate::samples::{check_same_layout, check_samples};
use crate::training::{TrainingReport, train};

/// Whose data a learned model is trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingMode {
    /// One model on all sites' training samples pooled (the privacy-blind upper reference).
    Centralized,
    /// One model per site, trained on that site alone.
    Local,
    /// One model from federated rounds (produced by the coordinator, not by `evaluate_fleet`).
    Federated,
}

/// The forecasting methods compared in a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Persistence,
    SeasonalNaiveDay,
    SeasonalNaiveWeek,
    Climatology,
    Ridge,
    Mlp,
    /// The MLP trained by federated rounds (scored by the coordinator with [`score_forecasts`]).
    FederatedMlp,
    /// The federated MLP fine-tuned by each site on its own data ([`crate::fine_tune`]).
    FederatedFineTuned,
    /// Gradient-boosted trees on every site's data pooled: the strong non-private reference
    /// (`models::gbt`, feature `gbt`; added by the CLI in centralized mode).
    PooledGbt,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Persistence => "persistence",
            ModelKind::SeasonalNaiveDay => "seasonal naive (day)",
            ModelKind::SeasonalNaiveWeek => "seasonal naive (week)",
            ModelKind::Climatology => "climatology",
            ModelKind::Ridge => "ridge",
            ModelKind::Mlp => "mlp",
            ModelKind::FederatedMlp => "federated mlp",
            ModelKind::FederatedFineTuned => "federated mlp + local fine-tune",
            ModelKind::PooledGbt => "gradient-boosted trees",
        }
    }
}

/// Accuracy of one model on one site's test samples, or on the whole fleet's (`site: None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRow {
    pub site: Option<String>,
    pub model: ModelKind,
    pub metrics: ForecastMetrics,
    /// `1 - MAE / MAE_persistence` on the same steps.
    pub skill: f64,
    /// The same scores on daylight steps only (PV targets).
    pub daylight: Option<ForecastMetrics>,
    pub daylight_skill: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelTiming {
    pub model: ModelKind,
    /// Wall-clock fitting time, all sites together.
    pub fit_seconds: f64,
}

/// Everything `gridfed train` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub target: Target,
    pub mode: TrainingMode,
    pub horizon: usize,
    pub context: usize,
    pub step_seconds: i64,
    pub sites: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    pub rows: Vec<EvaluationRow>,
    pub timings: Vec<ModelTiming>,
    /// One report per trained MLP (one in centralized mode, one per site in local mode).
    pub mlp_training: Vec<TrainingReport>,
    /// Baselines left out, with the reason (e.g. a context too short for a weekly season).
    pub skipped: Vec<String>,
    /// Sites of the fleet left out, with the reason (no complete window, too short, ...).
    #[serde(default)]
    pub skipped_sites: Vec<SkippedSite>,
    /// Per site, whether the MLP rows use the learned model or fell back to seasonal naive
    /// because that was better on the site's validation days ([`crate::guard`]).
    #[serde(default)]
    pub guard: Vec<GuardDecision>,
}

impl EvaluationReport {
    /// The pooled fleet row of `model`.
    pub fn overall(&self, model: ModelKind) -> Option<&EvaluationRow> {
        self.rows
            .iter()
            .find(|r| r.model == model && r.site.is_none())
    }
}

/// Trains and scores every model on a fleet: `train[i]` and `test[i]` are site `i`'s samples.
/// In `Centralized` mode ridge and the MLP are fitted once on all training samples pooled, in
/// `Local` mode once per site on that site's samples (sites in parallel). Baselines are the
/// same in both modes. Ridge uses `config`'s quantiles and validation fraction. PV forecasts
/// of every model are floored at 0 kW before scoring (see [`score_forecasts`]).
pub fn evaluate_fleet(
    target: Target,
    train_sets: &[SampleSet],
    test_sets: &[SampleSet],
    mode: TrainingMode,
    config: &ForecasterConfig,
) -> Result<EvaluationReport, ModelError> {
    check_fleet(train_sets, test_sets, config)?;
    let first = &train_sets[0];
    let mut report = EvaluationReport {
        target,
        mode,
        horizon: first.horizon,
        context: first.context,
        step_seconds: first.step_seconds,
        sites: train_sets.len(),
        train_samples: train_sets.iter().map(SampleSet::len).sum(),
        test_samples: test_sets.iter().map(SampleSet::len).sum(),
        rows: Vec::new(),
        timings: Vec::new(),
        mlp_training: Vec::new(),
        skipped: Vec::new(),
        skipped_sites: Vec::new(),
        guard: Vec::new(),
    };
    let persistence_forecasts = per_site(test_sets, persistence)?;
    let mut scored = vec![(ModelKind::Persistence, persistence_forecasts.clone())];
    for (kind, season) in [
        (ModelKind::SeasonalNaiveDay, Season::Day),
        (ModelKind::SeasonalNaiveWeek, Season::Week),
    ] {
        match per_site(test_sets, |t| seasonal_naive(t, season)) {
            Ok(forecasts) => scored.push((kind, forecasts)),
            Err(e @ ModelError::ContextTooShort { .. }) => {
                report.skipped.push(format!("{}: {e}", kind.name()))
            }
            Err(e) => return Err(e),
        }
    }
    let started = Instant::now();
    let climatology = Climatology::fit(train_sets)?;
    report.timings.push(ModelTiming {
        model: ModelKind::Climatology,
        fit_seconds: started.elapsed().as_secs_f64(),
    });
    scored.push((
        ModelKind::Climatology,
        per_site(test_sets, |t| climatology.predict(t))?,
    ));

    let ridge_config = RidgeConfig {
        quantiles: config.quantiles.clone(),
        validation_fraction: config.validation_fraction,
        ..RidgeConfig::default()
    };
    let (ridge, mlp) = rayon::join(
        || timed(|| fit_ridge(&ridge_config, train_sets, test_sets, mode)),
        || timed(|| fit_mlp(config, train_sets, test_sets, mode)),
    );
    let (ridge, ridge_seconds) = ridge;
    let ((mlp, guard, mlp_reports), mlp_seconds) = (mlp.0?, mlp.1);
    report.guard = guard;
    report.timings.push(ModelTiming {
        model: ModelKind::Ridge,
        fit_seconds: ridge_seconds,
    });
    report.timings.push(ModelTiming {
        model: ModelKind::Mlp,
        fit_seconds: mlp_seconds,
    });
    report.mlp_training = mlp_reports;
    scored.push((ModelKind::Ridge, ridge?));
    scored.push((ModelKind::Mlp, mlp));

    for (kind, forecasts) in &scored {
        report.rows.extend(score_forecasts(
            *kind,
            target,
            test_sets,
            forecasts,
            &persistence_forecasts,
        )?);
    }
    Ok(report)
}

/// Per-site and pooled rows for one model's forecasts of `test_sets` (e.g. a federated model
/// scored beside the others), with skill against the given persistence forecasts. PV
/// forecasts are floored at 0 kW and zero at night first: generation is never negative nor
/// there without sun, and the baselines already respect that while learned models may not.
pub fn score_forecasts(
    kind: ModelKind,
    target: Target,
    test_sets: &[SampleSet],
    forecasts: &[QuantileForecast],
    persistence_forecasts: &[QuantileForecast],
) -> Result<Vec<EvaluationRow>, ModelError> {
    if forecasts.len() != test_sets.len() || persistence_forecasts.len() != test_sets.len() {
        return Err(ModelError::LayoutMismatch(format!(
            "{} forecasts and {} persistence forecasts for {} test sets",
            forecasts.len(),
            persistence_forecasts.len(),
            test_sets.len()
        )));
    }
    let mut forecasts = forecasts.to_vec();
    if target == Target::Pv {
        for (forecast, test) in forecasts.iter_mut().zip(test_sets) {
            forecast.clamp_min_kw(test, 0.0)?;
            forecast.zero_at_night(test)?;
        }
    }
    let selections: &[StepSelection] = match target {
        Target::Load | Target::NetLoad => &[StepSelection::All],
        Target::Pv => &[StepSelection::All, StepSelection::Daylight],
    };
    // Per site, per selection: error sums of the model and of persistence.
    let mut sites: Vec<(String, Vec<(ErrorSums, ErrorSums)>)> = Vec::new();
    for ((test, forecast), reference) in test_sets.iter().zip(&forecasts).zip(persistence_forecasts)
    {
        let first = sites.len();
        sites.extend(test.site_ids.iter().map(|id| (id.clone(), Vec::new())));
        for &selection in selections {
            let model = site_errors(test, forecast, selection)?;
            let base = site_errors(test, reference, selection)?;
            for (k, pair) in model.into_iter().zip(base).enumerate() {
                sites[first + k].1.push(pair);
            }
        }
    }
    let row = |site: Option<String>, members: &[&Vec<(ErrorSums, ErrorSums)>]| {
        let pooled = |s: usize| {
            let model = ErrorSums::pooled(members.iter().map(|m| &m[s].0)).metrics();
            let base = ErrorSums::pooled(members.iter().map(|m| &m[s].1)).metrics();
            (model, model.skill_vs(&base))
        };
        let (metrics, skill) = pooled(0);
        let daylight = (selections.len() > 1).then(|| pooled(1));
        EvaluationRow {
            site,
            model: kind,
            metrics,
            skill,
            daylight: daylight.map(|d| d.0),
            daylight_skill: daylight.map(|d| d.1),
        }
    };
    let mut rows: Vec<EvaluationRow> = sites
        .iter()
        .map(|(id, sums)| row(Some(id.clone()), &[sums]))
        .collect();
    let everyone: Vec<_> = sites.iter().map(|(_, sums)| sums).collect();
    rows.push(row(None, &everyone));
    Ok(rows)
}

fn check_fleet(
    train_sets: &[SampleSet],
    test_sets: &[SampleSet],
    config: &ForecasterConfig,
) -> Result<(), ModelError> {
    if train_sets.is_empty() || train_sets.len() != test_sets.len() {
        return Err(ModelError::InvalidSamples(format!(
            "need one train and one test set per site, got {} and {}",
            train_sets.len(),
            test_sets.len()
        )));
    }
    config.validate()?;
    let first = &train_sets[0];
    for (train, test) in train_sets.iter().zip(test_sets) {
        check_samples(train)?;
        check_samples(test)?;
        check_same_layout(first, train)?;
        check_same_layout(first, test)?;
        if train.site_ids != test.site_ids {
            return Err(ModelError::LayoutMismatch(format!(
                "train sites {:?} differ from test sites {:?}",
                train.site_ids, test.site_ids
            )));
        }
    }
    if (config.n_features, config.horizon) != (first.n_features, first.horizon) {
        return Err(ModelError::LayoutMismatch(format!(
            "config expects {} features and horizon {}, samples have {} and {}",
            config.n_features, config.horizon, first.n_features, first.horizon
        )));
    }
    Ok(())
}

fn per_site(
    test_sets: &[SampleSet],
    forecast: impl Fn(&SampleSet) -> Result<QuantileForecast, ModelError>,
) -> Result<Vec<QuantileForecast>, ModelError> {
    test_sets.iter().map(forecast).collect()
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = work();
    (out, started.elapsed().as_secs_f64())
}

fn fit_ridge(
    config: &RidgeConfig,
    train_sets: &[SampleSet],
    test_sets: &[SampleSet],
    mode: TrainingMode,
) -> Result<Vec<QuantileForecast>, ModelError> {
    match mode {
        TrainingMode::Centralized => {
            let ridge = RidgeForecaster::fit(config, &SampleSet::concat(train_sets)?)?;
            per_site(test_sets, |t| ridge.predict(t))
        }
        TrainingMode::Local => train_sets
            .par_iter()
            .zip(test_sets)
            .map(|(train, test)| RidgeForecaster::fit(config, train)?.predict(test))
            .collect(),
        TrainingMode::Federated => Err(federated_unsupported()),
    }
}

/// Forecasts of the MLP(s) with the seasonal guard applied per site, the guard decisions and
/// the training reports.
type MlpResult = (
    Vec<QuantileForecast>,
    Vec<GuardDecision>,
    Vec<TrainingReport>,
);

fn fit_mlp(
    config: &ForecasterConfig,
    train_sets: &[SampleSet],
    test_sets: &[SampleSet],
    mode: TrainingMode,
) -> Result<MlpResult, ModelError> {
    match mode {
        TrainingMode::Centralized => {
            let trained = train(config, &SampleSet::concat(train_sets)?)?;
            let predict = |t: &SampleSet| trained.forecaster.predict(t);
            let (forecasts, decisions) = train_sets
                .iter()
                .zip(test_sets)
                .map(|(train_set, test)| guarded_site(config, train_set, test, predict))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .unzip();
            Ok((forecasts, decisions, vec![trained.report]))
        }
        TrainingMode::Local => {
            let results: Vec<(QuantileForecast, GuardDecision, TrainingReport)> = train_sets
                .par_iter()
                .zip(test_sets)
                .map(|(train_set, test)| {
                    let trained = train(config, train_set)?;
                    let predict = |t: &SampleSet| trained.forecaster.predict(t);
                    let (forecast, decision) = guarded_site(config, train_set, test, predict)?;
                    Ok((forecast, decision, trained.report))
                })
                .collect::<Result<_, ModelError>>()?;
            let mut out = (Vec::new(), Vec::new(), Vec::new());
            for (forecast, decision, report) in results {
                out.0.push(forecast);
                out.1.push(decision);
                out.2.push(report);
            }
            Ok(out)
        }
        TrainingMode::Federated => Err(federated_unsupported()),
    }
}

/// One site's guarded forecast of `test` and the guard's decision (see [`crate::guard`]).
pub fn guarded_site(
    config: &ForecasterConfig,
    train_set: &SampleSet,
    test: &SampleSet,
    predict: impl Fn(&SampleSet) -> Result<QuantileForecast, ModelError> + Copy,
) -> Result<(QuantileForecast, GuardDecision), ModelError> {
    let decision = guard_site(
        train_set,
        config.validation_fraction,
        &config.quantiles,
        predict,
    )?;
    let forecast = guarded_forecast(&decision, test, &config.quantiles, predict)?;
    Ok((forecast, decision))
}

fn federated_unsupported() -> ModelError {
    ModelError::InvalidConfig(
        "federated models are trained by the coordinator, not by evaluate_fleet".into(),
    )
}
