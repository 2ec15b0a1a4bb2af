//! The model registry and the forecast service over real gRPC: a modeler publishes a spec,
//! participant daemons train the real quantile MLP on synthetic sites in masked rounds, the
//! versions appear with signed manifests, an alias is promoted, forecasts are served by alias,
//! a rollback changes what the alias serves, an export loads as a model artifact, a tampered
//! artifact is refused, and every bad request gets a status naming its problem.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use coordinator::Protection;
use coordinator::registry::{VersionManifest, write_export};
use datasets::synth::{FleetConfig, generate_fleet};
use datasets::{Resolution, SplitSpec, Target, prepare_fleet};
use participant::MlpTrainer;
use proto::forecast::ForecastRequest;
use proto::forecast::forecast_client::ForecastClient;
use proto::registry::registry_client::RegistryClient;
use proto::registry::{self as pb, export_chunk};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const SPEC: &str = r#"
name = "res-load"
target = "load"
sector = "residential"
context = 168
horizon = 24
protection = "masked"
rounds = 3

[architecture]
hidden = [16]
batch_size = 64

[training]
min_participants = 3
local_epochs = 1
learning_rate = 0.003
"#;

async fn forecast(
    client: &mut ForecastClient<Channel>,
    request: &ForecastRequest,
) -> Result<proto::forecast::ForecastResponse, tonic::Status> {
    client
        .forecast(request.clone())
        .await
        .map(|r| r.into_inner())
}

fn p50(r: &proto::forecast::ForecastResponse) -> Vec<f32> {
    let q = r
        .quantiles
        .iter()
        .find(|q| (q.level - 0.5).abs() < 1e-6)
        .unwrap();
    q.values_kw.clone()
}

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("request should be refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(needle),
        "status `{}` does not mention `{needle}`",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_train_promote_forecast_rollback_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let coord = RunningCoordinator::start_registry(dir.path()).await;
    let url = coord.url();
    let channel = Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut registry = RegistryClient::new(channel.clone());
    let mut forecasts = ForecastClient::new(channel);

    // The operator token is required and checked.
    let list = pb::ListModelsRequest {};
    assert_status(
        registry.list_models(list).await,
        Code::Unauthenticated,
        "operator token",
    );
    assert_status(
        registry
            .list_models(authed(list, "wrong-token-wrong-token"))
            .await,
        Code::Unauthenticated,
        "operator token",
    );
    // A bad spec is refused naming the field.
    let bad = SPEC.replace("rounds = 3", "rounds = 0");
    assert_status(
        registry
            .publish_spec(authed(pb::PublishSpecRequest { spec_toml: bad }, OPERATOR))
            .await,
        Code::InvalidArgument,
        "`rounds`",
    );

    let published = registry
        .publish_spec(authed(
            pb::PublishSpecRequest {
                spec_toml: SPEC.into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (published.model.as_str(), published.tag.as_str()),
        ("res-load", "residential-load")
    );

    // Three sites train the published model in masked rounds.
    let fleet = generate_fleet(&FleetConfig {
        sites: 4,
        days: 42,
        resolution: Resolution::Hour,
        ..FleetConfig::default()
    });
    let series = fleet.regular_series();
    let sites = prepare_fleet(
        &fleet.sites,
        &series,
        Target::Load,
        SplitSpec::day_ahead(24),
    )
    .unwrap();
    // A site configured with another context than the published model's is refused at join
    // with the reason (it would otherwise abandon every round while the round waits for it).
    let mut other_context = SplitSpec::day_ahead(24);
    other_context.context = 48;
    let misconfigured = prepare_fleet(&fleet.sites, &series, Target::Load, other_context)
        .unwrap()
        .sites
        .remove(3);
    let refused = spawn_daemon(
        &url,
        "misconfigured",
        &published.tag,
        Arc::new(MlpTrainer::new(misconfigured.train)),
    );
    let refusal = tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .expect("refused at join, not left waiting")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(refusal, participant::ParticipantError::Config(_)),
        "{refusal}"
    );
    assert!(
        refusal
            .to_string()
            .contains("48 context and 24 horizon steps"),
        "{refusal}"
    );

    let daemons: Vec<_> = sites
        .iter()
        .take(3)
        .map(|s| {
            spawn_daemon(
                &url,
                &s.site.site_id,
                &published.tag,
                Arc::new(
                    MlpTrainer::new(s.train.clone()).with_holdout(s.test.clone(), Target::Load),
                ),
            )
        })
        .collect();
    let summaries = join_all(daemons, Duration::from_secs(240)).await;
    assert_eq!(summaries.len(), 3);

    // Three versions with signed manifests and their lineage.
    let listed = registry
        .list_versions(authed(
            pb::ListVersionsRequest {
                model: "res-load".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let key: [u8; 32] = listed.coordinator_key.as_slice().try_into().unwrap();
    let manifests: Vec<VersionManifest> = listed
        .versions
        .iter()
        .map(|v| serde_json::from_str(&v.manifest_json).unwrap())
        .collect();
    assert_eq!(
        manifests
            .iter()
            .map(|m| m.content.version)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for m in &manifests {
        m.verify(&key).expect("manifest signed by the coordinator");
        assert_eq!(m.content.lineage.participants, 3);
        assert_eq!(m.content.lineage.protection, Protection::Masked);
        assert!(m.content.metrics["update_l2"] > 0.0);
        // Federated metrics, signed with the version, for its sector.
        let evaluated = &m.content.federated_evaluation["residential"];
        assert_eq!(evaluated.protection, Protection::Masked);
        assert_eq!(evaluated.scores.sites, 3);
        assert!(evaluated.round > m.content.lineage.round);
        let nmae = m.content.metrics["federated_nmae"];
        assert!(nmae > 0.0 && nmae < 2.0, "federated nMAE {nmae}");
        assert_eq!(nmae, evaluated.scores.nmae);
    }
    assert_eq!(
        manifests[1]
            .content
            .lineage
            .parent
            .as_ref()
            .unwrap()
            .id
            .as_deref(),
        Some(manifests[0].id.as_str())
    );

    // A forecast request for site 0, one day before the end of its series.
    let site = &fleet.sites[0];
    let site_series = series
        .iter()
        .find(|s| s.telemetry.site_id == site.site_id)
        .unwrap();
    let origin = site_series.telemetry.timestamps.len() - 24;
    let request = coordinator::forecast::request_from_series(
        "res-load",
        site_series,
        site,
        Target::Load,
        origin,
        24,
        (60 * 24, 48),
    )
    .unwrap();
    // No production alias yet.
    assert_status(
        forecast(&mut forecasts, &request).await,
        Code::NotFound,
        "production",
    );

    let promote = |reference: &str| pb::PromoteRequest {
        model_ref: reference.into(),
        alias: "production".into(),
    };
    registry
        .promote(authed(promote("res-load@1"), OPERATOR))
        .await
        .unwrap();
    let first = forecast(&mut forecasts, &request).await.unwrap();
    assert_eq!(
        (first.version, first.version_id.as_str()),
        (1, manifests[0].id.as_str())
    );
    assert_eq!(first.timestamps_unix_s.len(), 24);
    // The answer carries the version's federated accuracy, as signed in its manifest.
    let accuracy = first.accuracy.as_ref().expect("federated accuracy");
    let signed = &manifests[0].content.federated_evaluation["residential"].scores;
    assert_eq!(
        (
            accuracy.sector.as_str(),
            accuracy.sites,
            accuracy.nmae,
            accuracy.coverage
        ),
        ("residential", 3, signed.nmae, signed.coverage)
    );
    assert_eq!(
        first.timestamps_unix_s[0],
        site_series.telemetry.timestamps[origin]
    );
    let levels: Vec<f32> = first.quantiles.iter().map(|q| q.level).collect();
    assert_eq!(levels, [0.1, 0.5, 0.9]);

    // A market engine learns what a request must carry without any credentials.
    let described = forecasts
        .describe_model(proto::forecast::DescribeModelRequest {
            model: "res-load".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            described.version,
            described.version_id.as_str(),
            described.target.as_str(),
            described.step_seconds,
            described.horizon_steps
        ),
        (1, manifests[0].id.as_str(), "load", 3_600, 24)
    );
    assert_eq!(described.quantile_levels, levels);
    // Load is normalized on four weeks of history unless the site's own scaling comes along.
    assert_eq!(described.history_steps, 24 * 28);
    assert_eq!(described.history_steps_with_site_normalization, 168);
    let history = request.history.as_ref().unwrap().values_kw.len();
    assert!(history >= described.history_steps as usize);
    let mut wanted: Vec<(String, String)> = described
        .covariates
        .iter()
        .map(|c| (c.name.clone(), c.unit.clone()))
        .collect();
    wanted.sort();
    let mut sent: Vec<String> = request
        .future
        .as_ref()
        .unwrap()
        .covariates
        .iter()
        .map(|c| c.name.clone())
        .collect();
    sent.sort();
    assert_eq!(
        wanted.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        sent
    );
    assert!(
        wanted.contains(&("temperature_forecast_c".into(), "degC".into())),
        "{wanted:?}"
    );
    let unknown = forecasts
        .describe_model(proto::forecast::DescribeModelRequest {
            model: "no-such-model".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    for step in 0..24 {
        let v: Vec<f32> = first.quantiles.iter().map(|q| q.values_kw[step]).collect();
        assert!(
            v.iter().all(|x| x.is_finite()) && v[0] <= v[1] && v[1] <= v[2],
            "{v:?}"
        );
    }
    // Meaningful: the median is in kW at the site's scale.
    let actual: Vec<f64> = site_series.telemetry.load_kw.as_ref().unwrap()[origin..origin + 24]
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let mean_actual = actual.iter().sum::<f64>() / 24.0;
    let mean_p50 = p50(&first).iter().map(|&v| f64::from(v)).sum::<f64>() / 24.0;
    assert!(
        mean_p50 > 0.3 * mean_actual && mean_p50 < 3.0 * mean_actual,
        "median forecast {mean_p50:.1} kW against actual {mean_actual:.1} kW"
    );

    registry
        .promote(authed(promote("res-load@2"), OPERATOR))
        .await
        .unwrap();
    let second = forecast(&mut forecasts, &request).await.unwrap();
    assert_eq!(second.version, 2);
    assert_ne!(
        p50(&second),
        p50(&first),
        "another version serves other values"
    );

    let rolled = registry
        .rollback(authed(
            pb::RollbackRequest {
                model: "res-load".into(),
                alias: "production".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((rolled.version, rolled.previous.as_slice()), (1, &[][..]));
    let again = forecast(&mut forecasts, &request).await.unwrap();
    assert_eq!(again.version, 1);
    assert_eq!(
        p50(&again),
        p50(&first),
        "the rollback serves version 1 again"
    );

    // Export: the weights and the signed manifest, usable as a models::ModelArtifact.
    let mut stream = registry
        .export_version(authed(
            pb::ExportRequest {
                model_ref: "res-load@2".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let Some(export_chunk::Part::Header(header)) = stream.message().await.unwrap().unwrap().part
    else {
        panic!("export starts with a header");
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        if let Some(export_chunk::Part::Data(data)) = chunk.part {
            bytes.extend_from_slice(&data);
        }
    }
    assert_eq!(bytes.len() as u64, header.length);
    let exported: VersionManifest = serde_json::from_str(&header.manifest_json).unwrap();
    let out = dir.path().join("export");
    write_export(
        &exported,
        &proto::chunk::bytes_to_f32(&bytes).unwrap(),
        &key,
        &out,
    )
    .unwrap();
    let artifact = models::ModelArtifact::load(&out).unwrap();
    let weights_v2 = proto::chunk::bytes_to_f32(&bytes).unwrap();
    assert_eq!(artifact.parameters(), weights_v2.as_slice());

    // The federated scores of version 2 are the window-weighted means of what each site
    // measures on its own holdout (computed here in the clear), up to fixed-point rounding.
    let config: models::ForecasterConfig =
        serde_json::from_str(&exported.content.forecaster_json).unwrap();
    let site_scores: Vec<models::HoldoutScores> = sites
        .iter()
        .take(3)
        .map(|s| {
            models::HoldoutScores::measure(&config, &weights_v2, &s.test, Target::Load).unwrap()
        })
        .collect();
    let windows: f64 = site_scores.iter().map(|s| f64::from(s.windows)).sum();
    let clear_nmae = site_scores
        .iter()
        .map(|s| f64::from(s.windows) * s.nmae)
        .sum::<f64>()
        / windows;
    let recorded = &manifests[1].content.federated_evaluation["residential"].scores;
    assert_eq!(recorded.windows, windows as u64);
    assert!(
        (recorded.nmae - clear_nmae).abs() < 1e-4,
        "federated nMAE {} vs in the clear {clear_nmae}",
        recorded.nmae
    );

    // Bad requests, each with its status.
    let mut unknown = request.clone();
    unknown.model = "no-such-model".into();
    assert_status(
        forecast(&mut forecasts, &unknown).await,
        Code::NotFound,
        "no-such-model",
    );
    let mut wrong_features = request.clone();
    wrong_features.future.as_mut().unwrap().covariates[0].name = "humidity_forecast".into();
    assert_status(
        forecast(&mut forecasts, &wrong_features).await,
        Code::InvalidArgument,
        "humidity_forecast",
    );
    let mut short = request.clone();
    let history = short.history.as_mut().unwrap();
    let keep = history.timestamps_unix_s.len() - 48;
    history.timestamps_unix_s.drain(..keep);
    history.values_kw.drain(..keep);
    assert_status(
        forecast(&mut forecasts, &short).await,
        Code::FailedPrecondition,
        "history",
    );
    let mut nan = request.clone();
    let n = nan.history.as_ref().unwrap().values_kw.len();
    nan.history.as_mut().unwrap().values_kw[n - 3] = f64::NAN;
    assert_status(
        forecast(&mut forecasts, &nan).await,
        Code::InvalidArgument,
        "not finite",
    );
    let mut too_far = request.clone();
    too_far.horizon_steps = 48;
    assert_status(
        forecast(&mut forecasts, &too_far).await,
        Code::OutOfRange,
        "horizon",
    );

    // A tampered artifact is refused at load: version 3 was never loaded.
    let storage = coordinator::storage::Storage::in_process(dir.path()).unwrap();
    let digest = &manifests[2].content.weights.sha256;
    let original = storage.raw_artifact(digest).unwrap();
    let mut weights = original.clone();
    weights[100] ^= 0x01;
    storage.overwrite_artifact(digest, &weights).unwrap();
    let mut tampered = request.clone();
    tampered.model = "res-load@3".into();
    assert_status(
        forecast(&mut forecasts, &tampered).await,
        Code::DataLoss,
        "refusing",
    );
    assert_status(
        registry
            .export_version(authed(
                pb::ExportRequest {
                    model_ref: "res-load@3".into(),
                },
                OPERATOR,
            ))
            .await,
        Code::DataLoss,
        "sha256",
    );
    // The alias still serves the verified version.
    assert_eq!(forecast(&mut forecasts, &request).await.unwrap().version, 1);

    // The damaged version is isolated: listing every model and this one's versions still
    // works and names it; it is counted once in the metrics.
    let listed = registry
        .list_versions(authed(
            pb::ListVersionsRequest {
                model: "res-load".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let damage: Vec<&str> = listed.versions.iter().map(|v| v.damage.as_str()).collect();
    assert_eq!(damage.len(), 3);
    assert!(damage[0].is_empty() && damage[1].is_empty(), "{damage:?}");
    assert!(damage[2].contains("sha256"), "{damage:?}");
    registry
        .list_models(authed(pb::ListModelsRequest {}, OPERATOR))
        .await
        .unwrap();
    assert_eq!(coord.metrics.versions_damaged(), 1);

    // Repair: bytes that are not the version's are refused, the original bytes restore it.
    let repair = |bytes: Vec<u8>| {
        let header = pb::RepairChunk {
            part: Some(pb::repair_chunk::Part::Header(pb::RepairHeader {
                model: "res-load".into(),
                length: bytes.len() as u64,
                sha256: proto::chunk::sha256(&bytes).to_vec(),
            })),
        };
        let data = proto::chunk::split(bytes.into())
            .map(|c| pb::RepairChunk {
                part: Some(pb::repair_chunk::Part::Data(c)),
            })
            .collect::<Vec<_>>();
        authed(
            tokio_stream::iter(std::iter::once(header).chain(data).collect::<Vec<_>>()),
            OPERATOR,
        )
    };
    assert_status(
        registry.repair_version(repair(weights.clone())).await,
        Code::InvalidArgument,
        "not the weights it committed",
    );
    let repaired = registry
        .repair_version(repair(original))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repaired.versions, [3]);
    assert_eq!(
        forecast(&mut forecasts, &tampered).await.unwrap().version,
        3
    );
    let listed = registry
        .list_versions(authed(
            pb::ListVersionsRequest {
                model: "res-load".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.versions.iter().all(|v| v.damage.is_empty()));

    coord.stop().await;
}
