//! Federated training of the quantile MLP over a real, in-process federation: a coordinator on
//! 127.0.0.1:0 with a temporary data directory and one participant daemon per site, talking
//! gRPC over loopback. Each daemon trains on its own site's samples only; the coordinator sees
//! masked (or, in test mode, plain) updates and commits one model version per round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use coordinator::{CoordinatorConfig, FederationSpec, InitialWeights, Metrics, Protection};
use datasets::PreparedSite;
use models::ForecasterConfig;
use participant::{Daemon, DaemonSettings, Limits, MlpTrainer, SiteIdentity};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const FEDERATION: &str = "forecaster";
const TOKEN: &str = "in-process-enrollment";

/// One committed round of [`federated_training`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FederatedRound {
    /// Model version the round produced (1-based).
    pub version: u64,
    /// Contributions in the FedAvg.
    pub participants: u64,
    /// Wall time since the previous version (local training included).
    pub seconds: f64,
    /// Payload bytes all participants sent / received during the round.
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// What [`federated_training`] produced.
#[derive(Clone, Debug, Serialize)]
pub struct FederatedOutcome {
    /// Final flat parameters; load with `models::QuantileForecaster::from_flat(config, ..)`.
    #[serde(skip)]
    pub params: Vec<f32>,
    pub protection: Protection,
    pub rounds: Vec<FederatedRound>,
    /// Mean coordinator-side phase time per round, ms.
    pub phases_ms: BTreeMap<String, f64>,
    /// Payload bytes per participant over the whole training, sent and received.
    pub bytes_sent_per_participant: u64,
    pub bytes_received_per_participant: u64,
    pub seconds: f64,
    /// With [`FederatedPlan::personalize`]: the model each site's daemon kept after the last
    /// round (the final weights fine-tuned on its own data), in the order of the sites.
    #[serde(skip)]
    pub personalized: Vec<models::ModelArtifact>,
    /// With [`FederatedPlan::evaluate`]: each version's federated evaluation (scores of the
    /// sites' holdouts, aggregated under the run's protection), by version.
    pub evaluations: BTreeMap<u64, models::FleetScores>,
}

/// How a federated training run is organised.
#[derive(Clone, Debug)]
pub struct FederatedPlan {
    pub rounds: usize,
    pub local_epochs: usize,
    pub protection: Protection,
    /// FedAvgM server momentum on the aggregate (0: plain FedAvg).
    pub server_momentum: f32,
    /// Have every daemon personalize the final model for this target (see
    /// `participant::MlpTrainer::with_personalization`).
    pub personalize: Option<datasets::Target>,
    /// Run a federated evaluation round after each training round: every daemon scores the
    /// new version on its own `test` samples (for this target).
    pub evaluate: Option<datasets::Target>,
    /// Site-level differential privacy of every round (distributed noise, `crypto::dp`).
    pub dp: Option<coordinator::config::DpSpec>,
}

/// Trains `config`'s MLP by federated averaging across `sites` (one participant each, using
/// only its `train` samples): `plan.rounds` rounds of `plan.local_epochs` local epochs, FedAvg
/// weighted by sample counts, updates protected by `plan.protection`. Initial weights are
/// `config.init` with `config.seed`. `progress(done, rounds)` is called as each round commits.
pub fn federated_training(
    sites: &[PreparedSite],
    config: &ForecasterConfig,
    plan: &FederatedPlan,
    progress: impl Fn(usize, usize) + Send + Sync,
) -> Result<FederatedOutcome> {
    let FederatedPlan {
        rounds,
        local_epochs,
        protection: mode,
        server_momentum,
        personalize,
        evaluate,
        ref dp,
    } = *plan;
    ensure!(rounds >= 1, "federated training needs at least one round");
    ensure!(
        local_epochs >= 1,
        "federated training needs at least one local epoch"
    );
    ensure!(
        !sites.is_empty(),
        "federated training needs at least one site"
    );
    if mode == Protection::Masked {
        ensure!(
            sites.len() >= 3,
            "masked aggregation needs at least 3 sites"
        );
    }
    config.validate()?;
    for site in sites {
        let train = &site.train;
        ensure!(
            (train.n_features, train.horizon) == (config.n_features, config.horizon),
            "site {} has {} features and horizon {}, the model {} and {}",
            site.site.site_id,
            train.n_features,
            train.horizon,
            config.n_features,
            config.horizon
        );
        ensure!(
            !train.is_empty(),
            "site {} has no training samples",
            site.site.site_id
        );
    }
    let initial = models::to_flat(&config.init(&models::inference_device())?)?;
    let max_samples = sites.iter().map(|s| s.train.len()).max().unwrap_or(1);
    let spec = FederationSpec {
        tag: FEDERATION.into(),
        protection: mode,
        min_participants: sites.len(),
        model_spec_json: serde_json::to_string(config)?,
        initial_weights: InitialWeights::Values(initial),
        local_epochs: u32::try_from(local_epochs).context("too many local epochs")?,
        learning_rate: config.learning_rate as f32,
        learning_rate_decay: coordinator::registry::DEFAULT_LEARNING_RATE_DECAY,
        fedprox_mu: config.proximal_mu,
        server_momentum,
        // FedAvg weights are the true sample counts.
        max_weight: u32::try_from(max_samples.max(1)).context("too many samples")?,
        evaluate: evaluate.is_some(),
        dp: dp.clone(),
        ..FederationSpec::vector(FEDERATION, 0, mode, rounds as u64)
    };
    let dir = tempfile::tempdir().context("creating a temporary coordinator directory")?;
    let config = CoordinatorConfig::new(dir.path(), TOKEN, vec![spec]);
    config.validate()?;
    let metrics = Arc::new(Metrics::default());
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let personal_dir = dir.path().join("personalized");
    let personal = personalize.map(|target| (target, personal_dir.as_path()));
    let mut records = runtime.block_on(run_federation(
        config,
        sites,
        metrics.clone(),
        RunPlan {
            rounds,
            personalize: personal,
            evaluate,
        },
        &progress,
    ))?;
    drop(runtime);
    let seconds = started.elapsed().as_secs_f64();

    let (latest, params) = coordinator::load_latest(dir.path(), FEDERATION)?;
    ensure!(
        latest.version == rounds as u64,
        "federation stopped at version {} of {rounds}",
        latest.version
    );
    let mut evaluations = BTreeMap::new();
    for version in coordinator::load_versions(dir.path(), FEDERATION)? {
        if let Some(record) = records.iter_mut().find(|r| r.version == version.version) {
            record.participants = version.participants;
        }
        if let coordinator::VersionEvaluation::Scored { scores, .. } = version.evaluation {
            evaluations.insert(version.version, scores);
        }
    }
    let n = sites.len() as u64;
    let completed = metrics.rounds_completed().max(1) as f64;
    let personalized = match personalize {
        Some(_) => (0..sites.len())
            .map(|i| {
                models::ModelArtifact::load(&personal_dir.join(i.to_string()))
                    .with_context(|| format!("site {}'s personalized model", sites[i].site.site_id))
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(FederatedOutcome {
        personalized,
        evaluations,
        params,
        protection: mode,
        rounds: records,
        phases_ms: metrics
            .phase_durations()
            .into_iter()
            .map(|(phase, (sum, _))| (phase.to_string(), sum as f64 / completed))
            .collect(),
        bytes_sent_per_participant: metrics.total_bytes_in() / n,
        bytes_received_per_participant: metrics.total_bytes_out() / n,
        seconds,
    })
}

/// What the in-process daemons do besides training.
struct RunPlan<'a> {
    rounds: usize,
    personalize: Option<(datasets::Target, &'a std::path::Path)>,
    evaluate: Option<datasets::Target>,
}

async fn run_federation(
    mut config: CoordinatorConfig,
    sites: &[PreparedSite],
    metrics: Arc<Metrics>,
    plan: RunPlan<'_>,
    progress: &(impl Fn(usize, usize) + Send + Sync),
) -> Result<Vec<FederatedRound>> {
    let rounds = plan.rounds;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = super::runtime::loopback_transport(&mut config, listener.local_addr()?, true)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(coordinator::serve_with(
        listener,
        None,
        config,
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut daemons = Vec::with_capacity(sites.len());
    for site in sites {
        let settings = DaemonSettings {
            coordinator: endpoint.clone(),
            enrollment_token: TOKEN.into(),
            site_label: site.site.site_id.clone(),
            federation_tag: FEDERATION.into(),
            limits: Limits {
                backoff_initial_ms: 50,
                backoff_max_ms: 1_000,
                ..Limits::default()
            },
        };
        let mut inner = MlpTrainer::new(site.train.clone());
        if let Some(target) = plan.evaluate {
            inner = inner.with_holdout(site.test.clone(), target);
        }
        if let Some((target, dir)) = plan.personalize {
            inner = inner.with_personalization(dir.join(daemons.len().to_string()), target);
        }
        let trainer = Arc::new(inner);
        let daemon = Daemon::new(settings, Arc::new(SiteIdentity::generate()?), trainer)?;
        daemons.push(Some(tokio::spawn(daemon.run(std::future::pending()))));
    }

    let mut records = Vec::with_capacity(rounds);
    let (mut last, mut last_up, mut last_down) = (Instant::now(), 0u64, 0u64);
    let outcome: Result<()> = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done = metrics.rounds_completed() as usize;
            while records.len() < done.min(rounds) {
                let (up, down) = (metrics.total_bytes_in(), metrics.total_bytes_out());
                records.push(FederatedRound {
                    version: records.len() as u64 + 1,
                    participants: 0,
                    seconds: last.elapsed().as_secs_f64(),
                    bytes_up: up - last_up,
                    bytes_down: down - last_down,
                });
                (last, last_up, last_down) = (Instant::now(), up, down);
                progress(records.len(), rounds);
            }
            // A daemon that ended before the last round failed: stop everything.
            for (i, slot) in daemons.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(|h| h.is_finished())
                    && let Some(handle) = slot.take()
                {
                    let summary = handle
                        .await
                        .with_context(|| format!("participant {i} panicked"))?
                        .with_context(|| format!("participant {} failed", sites[i].site.site_id))?;
                    if summary.final_version.is_none() {
                        bail!("participant {} stopped early", sites[i].site.site_id);
                    }
                }
            }
            if daemons.iter().all(Option::is_none) && records.len() >= rounds {
                return Ok(());
            }
        }
    }
    .await;
    for handle in daemons.into_iter().flatten() {
        handle.abort();
    }
    let _ = stop.send(());
    server.await.context("coordinator task")??;
    outcome.map(|()| records)
}

/// The day-ahead forecasts of a federated MLP for each site's `test` samples: the final global
/// model's, and each site's own fine-tuned model's with the seasonal guard applied on its own
/// validation days (what each participant daemon keeps and forecasts with).
pub struct FederatedForecasts {
    pub global: Vec<models::QuantileForecast>,
    pub tuned: Vec<models::QuantileForecast>,
    pub guard: Vec<models::GuardDecision>,
    pub outcome: FederatedOutcome,
}

/// Trains by [`federated_training`] (with `plan.personalize` set) and forecasts `test`.
pub fn federated_forecasts(
    sites: &[PreparedSite],
    test: &[datasets::SampleSet],
    config: &ForecasterConfig,
    plan: &FederatedPlan,
    progress: impl Fn(usize, usize) + Send + Sync,
) -> Result<FederatedForecasts> {
    ensure!(
        plan.personalize.is_some(),
        "federated forecasts need personalized models"
    );
    let outcome = federated_training(sites, config, plan, progress)?;
    let global = models::QuantileForecaster::from_flat(config.clone(), &outcome.params)?;
    let global = test
        .iter()
        .map(|t| global.predict(t))
        .collect::<Result<Vec<_>, _>>()?;
    let (tuned, guard) = outcome
        .personalized
        .iter()
        .zip(sites)
        .zip(test)
        .map(|((artifact, site), test)| {
            let forecaster = artifact.forecaster()?;
            let predict = |d: &datasets::SampleSet| forecaster.predict(d);
            Ok(models::evaluation::guarded_site(
                forecaster.config(),
                &site.train,
                test,
                predict,
            )?)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    Ok(FederatedForecasts {
        global,
        tuned,
        guard,
        outcome,
    })
}

/// Progress of [`federated_training`]'s rounds on stderr: a redrawn bar on a terminal, a line
/// per quarter otherwise (a log file gets four lines, not one `\r` frame per round).
pub fn round_progress(label: String) -> impl Fn(usize, usize) + Send + Sync {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    move |done, all| {
        if terminal {
            let width = 40;
            let filled = (done * width).checked_div(all).unwrap_or(width);
            let bar = "#".repeat(filled) + &".".repeat(width - filled);
            eprint!("\r  federated {label}: round {done}/{all} [{bar}]");
            if done == all {
                eprintln!();
            }
        } else if (done * 4).checked_div(all) != (done.saturating_sub(1) * 4).checked_div(all)
            || done == all
        {
            eprintln!("  federated {label}: round {done}/{all}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::synth::{FleetConfig, generate_fleet};
    use datasets::{Resolution, SampleSet, SplitSpec, Target, prepare_fleet};
    use models::{ModelKind, QuantileForecaster, TrainingMode, evaluate_fleet, score_forecasts};

    fn var(key: &str, default: usize) -> usize {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Pooled day-ahead nMAE of `params` on the test sets.
    fn nmae(config: &ForecasterConfig, params: &[f32], test: &[SampleSet]) -> f64 {
        let model = QuantileForecaster::from_flat(config.clone(), params).unwrap();
        let forecasts: Vec<_> = test.iter().map(|t| model.predict(t).unwrap()).collect();
        let persistence: Vec<_> = test
            .iter()
            .map(|t| models::persistence(t).unwrap())
            .collect();
        let rows = score_forecasts(
            ModelKind::FederatedMlp,
            Target::Load,
            test,
            &forecasts,
            &persistence,
        )
        .unwrap();
        rows.last().unwrap().metrics.nmae
    }

    /// Federated vs centralized day-ahead load nMAE on a synthetic fleet, plus the same FedAvg
    /// computed in-process without the network (to separate the algorithm from the transport).
    /// Slow: `cargo test --release -p gridfed --bin gridfed federated_close -- --ignored
    /// --nocapture`. Env: GRIDFED_SITES, GRIDFED_DAYS, GRIDFED_ROUNDS, GRIDFED_EPOCHS,
    /// GRIDFED_MODE=plain.
    #[test]
    #[ignore]
    fn federated_close_to_centralized() {
        let fleet = generate_fleet(&FleetConfig {
            sites: var("GRIDFED_SITES", 10),
            days: var("GRIDFED_DAYS", 200),
            resolution: Resolution::Hour,
            seed: 7,
            ..FleetConfig::default()
        });
        let series = fleet.regular_series();
        let prepared = prepare_fleet(
            &fleet.sites,
            &series,
            Target::Load,
            SplitSpec::day_ahead(24),
        )
        .unwrap();
        let train: Vec<_> = prepared.iter().map(|p| p.train.clone()).collect();
        let test: Vec<_> = prepared.iter().map(|p| p.test.clone()).collect();
        let config =
            ForecasterConfig::day_ahead(Target::Load, train[0].n_features, train[0].horizon);
        let (rounds, epochs) = (var("GRIDFED_ROUNDS", 40), var("GRIDFED_EPOCHS", 1));

        let t = Instant::now();
        let central = evaluate_fleet(
            Target::Load,
            &train,
            &test,
            TrainingMode::Centralized,
            &config,
        )
        .unwrap();
        let central_s = t.elapsed().as_secs_f64();
        let cen = central.overall(ModelKind::Mlp).unwrap().metrics.nmae;

        let mode = match std::env::var("GRIDFED_MODE").as_deref() {
            Ok("plain") => Protection::Plain,
            _ => Protection::Masked,
        };
        let plan = FederatedPlan {
            rounds,
            local_epochs: epochs,
            protection: mode,
            server_momentum: 0.0,
            personalize: None,
            evaluate: None,
            dp: None,
        };
        let outcome = federated_training(&prepared, &config, &plan, |_, _| {}).unwrap();
        let fed = nmae(&config, &outcome.params, &test);

        // The same FedAvg (constant learning rate) in one process, no network.
        let mut global =
            models::to_flat(&config.init(&models::inference_device()).unwrap()).unwrap();
        for round in 1..=rounds as u64 {
            let local_config = config.clone().with_seed(config.seed.wrapping_add(round));
            let (mut sum, mut total) = (vec![0.0f64; global.len()], 0.0);
            for t in &train {
                let update = models::train_local(&local_config, &global, t, epochs).unwrap();
                let w = update.samples as f64;
                for (s, (p, g)) in sum.iter_mut().zip(update.params.iter().zip(&global)) {
                    *s += f64::from(p - g) * w;
                }
                total += w;
            }
            for (g, s) in global.iter_mut().zip(&sum) {
                *g += (s / total) as f32;
            }
        }
        let in_process = nmae(&config, &global, &test);
        eprintln!(
            "load, {} sites, {rounds} rounds x {epochs} epochs: federated nMAE {fed:.4} ({:.1} s, {:?}), in-process FedAvg {in_process:.4}, centralized {cen:.4} ({central_s:.1} s); federated / centralized = {:.3}\n{}",
            train.len(),
            outcome.seconds,
            mode,
            fed / cen,
            serde_json::to_string(&outcome).unwrap()
        );
        assert!(fed.is_finite() && fed < 1.0);
    }
}
