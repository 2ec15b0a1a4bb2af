//! After the last round each site fine-tunes the final global model on its own data and keeps
//! the result as a model artifact: real MLP training, real gRPC on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use coordinator::{FederationSpec, InitialWeights, Protection};
use datasets::synth::{FleetConfig, generate_fleet};
use datasets::{Resolution, SplitSpec, Target, prepare_fleet};
use models::{ForecasterConfig, ModelArtifact, TrainingMode};
use participant::MlpTrainer;
use participant::personal::{PersonalModel, PersonalSource};

/// Runs two masked rounds of a 16-unit MLP over `sites` (federation `tag`) with each daemon
/// personalizing the final model into `dir/<tag>-<i>`; returns those output folders.
async fn federate_and_personalize(
    dir: &std::path::Path,
    sites: &[datasets::PreparedSite],
    target: Target,
    tag: &str,
) -> Vec<std::path::PathBuf> {
    let first = &sites[0].train;
    let config = ForecasterConfig::new(first.n_features, first.horizon).with_hidden(vec![16]);
    let initial = models::to_flat(&config.init(&models::inference_device()).unwrap()).unwrap();
    let spec = FederationSpec {
        min_participants: sites.len(),
        model_spec_json: serde_json::to_string(&config).unwrap(),
        initial_weights: InitialWeights::Values(initial),
        ..FederationSpec::vector(tag, 0, Protection::Masked, 2)
    };
    let coord = RunningCoordinator::start(dir, vec![spec]).await;
    let outputs: Vec<_> = (0..sites.len())
        .map(|i| dir.join(format!("{tag}-{i}")))
        .collect();
    let daemons = sites
        .iter()
        .zip(&outputs)
        .map(|(site, out)| {
            let trainer =
                MlpTrainer::new(site.train.clone()).with_personalization(out.clone(), target);
            spawn_daemon(&coord.url(), &site.site.site_id, tag, Arc::new(trainer))
        })
        .collect();
    let summaries = join_all(daemons, Duration::from_secs(120)).await;
    assert!(summaries.iter().all(|s| s.final_version == Some(2)));
    // A site's daemon restarted after the last round (killed before it heard the federation
    // was done) trains nothing, yet finishes cleanly and keeps its fine-tuned copy.
    let late = dir.join(format!("{tag}-late"));
    let trainer =
        MlpTrainer::new(sites[0].train.clone()).with_personalization(late.clone(), target);
    let restarted = spawn_daemon(&coord.url(), &sites[0].site.site_id, tag, Arc::new(trainer));
    let summary = join_all(vec![restarted], Duration::from_secs(120)).await;
    assert_eq!(summary[0].final_version, Some(2));
    assert_eq!(summary[0].rounds_uploaded, 0);
    assert!(
        ModelArtifact::load(&late).is_ok(),
        "no fine-tuned copy after a late restart"
    );
    coord.stop().await;
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_site_keeps_a_fine_tuned_copy_of_the_final_model() {
    let fleet = generate_fleet(&FleetConfig {
        sites: 4,
        days: 42,
        resolution: Resolution::Hour,
        ..FleetConfig::default()
    });
    let sites = prepare_fleet(
        &fleet.sites,
        &fleet.regular_series(),
        Target::Load,
        SplitSpec::day_ahead(24),
    )
    .unwrap();
    let sites = &sites[..3];
    let dir = tempfile::tempdir().unwrap();
    let outputs = federate_and_personalize(dir.path(), sites, Target::Load, "load").await;
    let (_, global) = coordinator::load_latest(dir.path(), "load").unwrap();

    for (site, out) in sites.iter().zip(&outputs) {
        let artifact = ModelArtifact::load(out).unwrap();
        let manifest = artifact.manifest();
        assert_eq!(manifest.lineage.mode, TrainingMode::Federated);
        assert_eq!(artifact.parameters().len(), global.len());
        assert!(manifest.metrics["best_validation_loss"].is_finite());
        // Its normalization is the site's own; the model forecasts the site's held-out days.
        assert_eq!(manifest.normalizations[0].site_id, site.site.site_id);
        let forecast = artifact.forecaster().unwrap().predict(&site.test).unwrap();
        assert_eq!(forecast.len(), site.test.len());
        assert!(forecast.values.iter().all(|v| v.is_finite()));

        served_matches_the_trained_forecaster(&fleet, site, out, Target::Load);
    }

    // Before the federation has finished there is nothing to forecast with, and saying so.
    let series = &fleet.regular_series()[0];
    let empty = dir.path().join("not-yet");
    let err = PersonalModel::load(&empty, series)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no fine-tuned model yet"), "{err}");
}

/// Net-metered prosumers (import minus export, negative at noon) federate like load sites:
/// masked rounds, a fine-tuned copy each, and the seasonal guard's decision beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net_metered_sites_federate_and_keep_their_seasonal_guard_decision() {
    let fleet = generate_fleet(&FleetConfig {
        sites: 20,
        days: 42,
        resolution: Resolution::Hour,
        profile: datasets::synth::Profile::Realistic,
        ..FleetConfig::default()
    });
    let sites = prepare_fleet(
        &fleet.sites,
        &fleet.regular_series(),
        Target::NetLoad,
        SplitSpec::day_ahead(24),
    )
    .unwrap();
    assert!(sites.len() >= 3, "{} net-metered sites", sites.len());
    let sites = &sites[..3];
    assert!(sites.iter().any(|s| s.train.y.iter().any(|&v| v < 0.0)));
    let dir = tempfile::tempdir().unwrap();
    let outputs = federate_and_personalize(dir.path(), sites, Target::NetLoad, "net").await;
    for (site, out) in sites.iter().zip(&outputs) {
        let artifact = ModelArtifact::load(out).unwrap();
        assert_eq!(artifact.manifest().spec.target, Target::NetLoad);
        let forecast = artifact.forecaster().unwrap().predict(&site.test).unwrap();
        assert_eq!(forecast.len(), site.test.len());
        let guard: models::GuardDecision = serde_json::from_slice(
            &std::fs::read(out.join(participant::trainer::SEASONAL_GUARD_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(guard.site_id, site.site.site_id);
        assert!(guard.learned_mae.is_finite() && guard.naive_mae.is_finite());
        let fallback = artifact.manifest().metrics["seasonal_guard_fallback"];
        assert_eq!(fallback, if guard.fell_back() { 1.0 } else { 0.0 });
        let source = served_matches_the_trained_forecaster(&fleet, site, out, Target::NetLoad);
        assert_eq!(
            matches!(source, PersonalSource::SeasonalNaive(_)),
            guard.fell_back(),
            "the served forecast follows the guard"
        );
        eprintln!("{}: {source:?}", site.site.site_id);
    }
}

/// `gridfed participant forecast`: the site's fine-tuned model served from its telemetry
/// forecasts a held-out day as the fine-tuned forecaster does on that window, or, where the
/// seasonal guard fell back, as seasonal naive plus the guard's offset. Returns the source.
fn served_matches_the_trained_forecaster(
    fleet: &datasets::synth::Fleet,
    site: &datasets::PreparedSite,
    out: &std::path::Path,
    target: Target,
) -> PersonalSource {
    let artifact = ModelArtifact::load(out).unwrap();
    let kw = artifact
        .forecaster()
        .unwrap()
        .predict(&site.test)
        .unwrap()
        .to_kw(&site.test)
        .unwrap();
    let index = fleet
        .sites
        .iter()
        .position(|m| m.site_id == site.site.site_id)
        .unwrap();
    let series = &fleet.regular_series()[index];
    let personal = PersonalModel::load(out, series).unwrap();
    let sample = site.test.len() / 2;
    let at = site.test.origins[sample];
    let (served, source) = personal
        .forecast(series, &fleet.sites[index], Some(at), site.test.horizon)
        .unwrap();
    assert_eq!(served.timestamps_unix_s[0], at);
    let median = kw.median_level();
    let level = served
        .levels
        .iter()
        .position(|&l| (l - 0.5).abs() < 1e-6)
        .unwrap();
    let values = target.values(&series.telemetry).unwrap();
    let origin = series
        .telemetry
        .timestamps
        .iter()
        .position(|&t| t == at)
        .unwrap();
    let scale = artifact.manifest().normalizations[0].scale_kw;
    for h in 0..site.test.horizon {
        let expected = match source {
            PersonalSource::FineTuned => kw.value(sample, median, h),
            PersonalSource::SeasonalNaive(season) => {
                let back = usize::try_from(season.seconds() / 3600).unwrap();
                values[origin + h - back].unwrap() as f32
                    + personal.guard().unwrap().naive_offsets[level] * scale
            }
        };
        let got = served.values_kw[level][h];
        assert!(
            (got - expected).abs() <= 1e-3 * expected.abs().max(1.0),
            "step {h}: served {got} vs {expected} ({source:?})"
        );
    }
    source
}
