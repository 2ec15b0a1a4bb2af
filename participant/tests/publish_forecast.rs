//! A participant forecasts its own site with the registry's production model and publishes it
//! to the board, over real gRPC: a modeler publishes a spec, three sites train it in masked
//! rounds, version 1 is promoted; a fourth participant fetches `NAME` (FetchModel, signed),
//! verifies the manifest under the key it got on Join and the weights against it, forecasts
//! from its own Parquet telemetry and publishes. The board holds it under the right manifest
//! id, and it equals what the coordinator's forecast service computes with that version. A
//! wrong key, tampered weights (at the participant and at the coordinator), unknown models and
//! manifest ids, and unenrolled or forged fetches are refused with clear errors.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use coordinator::registry::VersionManifest;
use datasets::synth::{FleetConfig, generate_fleet};
use datasets::{Resolution, SplitSpec, Target, prepare_fleet};
use participant::board::publish_site_forecast;
use participant::client::{FederationLink, WireTap, connect, open_channel};
use participant::production::{fetch_model, publish_production_forecast, verify_fetched};
use participant::{DataConfig, MlpTrainer, ParticipantError, SiteIdentity};
use proto::forecast::forecast_client::ForecastClient;
use proto::forecast::{FetchModelRequest, QueryBoardRequest};
use proto::registry::{self as pb, registry_client::RegistryClient};
use tonic::Code;

const STEPS: usize = 24;

fn spec(sector: &str) -> String {
    format!(
        r#"
name = "site-load"
target = "load"
sector = "{sector}"
context = 168
horizon = 24
protection = "masked"
rounds = 2

[architecture]
hidden = [16]
batch_size = 64

[training]
min_participants = 3
local_epochs = 1
learning_rate = 0.003
"#
    )
}

fn status_of(error: ParticipantError) -> tonic::Status {
    match error {
        ParticipantError::Status(status) => status,
        other => panic!("expected a refusal status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_forecasts_its_site_with_the_production_model_and_publishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let coord_dir = dir.path().join("coordinator");
    let coord = RunningCoordinator::start_registry(&coord_dir).await;
    let channel = open_channel(&coord.endpoint()).await.unwrap();
    let mut registry = RegistryClient::new(channel.clone());

    let fleet = generate_fleet(&FleetConfig {
        sites: 4,
        days: 42,
        resolution: Resolution::Hour,
        ..FleetConfig::default()
    });
    let site = fleet.sites[0].clone();
    let published = registry
        .publish_spec(authed(
            pb::PublishSpecRequest {
                spec_toml: spec(site.sector.as_str()),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let series = fleet.regular_series();
    let prepared = prepare_fleet(
        &fleet.sites,
        &series,
        Target::Load,
        SplitSpec::day_ahead(24),
    )
    .unwrap();
    let daemons = prepared
        .iter()
        .take(3)
        .map(|s| {
            spawn_daemon(
                &coord.url(),
                &s.site.site_id,
                &published.tag,
                Arc::new(
                    MlpTrainer::new(s.train.clone()).with_holdout(s.test.clone(), Target::Load),
                ),
            )
        })
        .collect();
    join_all(daemons, Duration::from_secs(240)).await;
    let listed = registry
        .list_versions(authed(
            pb::ListVersionsRequest {
                model: "site-load".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let manifests: Vec<VersionManifest> = listed
        .versions
        .iter()
        .map(|v| serde_json::from_str(&v.manifest_json).unwrap())
        .collect();
    assert_eq!(manifests.len(), 2);
    // Production is version 1 although version 2 exists: the fetch must follow the alias.
    registry
        .promote(authed(
            pb::PromoteRequest {
                model_ref: "site-load@1".into(),
                alias: "production".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap();

    // The site's telemetry as its operator keeps it: Parquet files and sites.json.
    let data_dir = dir.path().join("site-data");
    datasets::writer::write_fleet_dir(&data_dir, &fleet.sites, &fleet.telemetry).unwrap();
    let data = DataConfig {
        dir: data_dir,
        site_id: site.site_id.clone(),
        target: "load".into(),
        resolution: "1h".into(),
        context: None,
        horizon: None,
        test_fraction: 0.2,
    };

    // The participant enrolls and learns the coordinator's key on Join.
    let sent = Arc::new(Methods::default());
    let mut link = FederationLink::enroll(
        connect(&coord.endpoint()).await.unwrap(),
        Arc::new(SiteIdentity::generate().unwrap()),
        TOKEN,
        &site.site_id,
        Some(sent.clone() as Arc<dyn WireTap>),
    )
    .await
    .unwrap();
    let joined = link.join(&published.tag).await.unwrap();
    let key: [u8; 32] = joined.coordinator_key.as_slice().try_into().unwrap();
    assert_eq!(joined.coordinator_key, listed.coordinator_key);

    let fetched = Arc::new(
        fetch_model(&link, channel.clone(), "site-load", &key)
            .await
            .unwrap(),
    );
    assert_eq!(fetched.manifest.version, 1);
    assert_eq!(fetched.id, manifests[0].id);
    assert_eq!(fetched.reference(), "site-load@1");

    let site_series = &series[0];
    let origin = site_series.telemetry.timestamps.len() - STEPS;
    let origin_unix_s = site_series.telemetry.timestamps[origin];
    let out = publish_production_forecast(
        &link,
        channel.clone(),
        fetched.clone(),
        data.clone(),
        Some(origin_unix_s),
        STEPS,
    )
    .await
    .unwrap();
    assert_eq!(out.response.participant_id, link.participant_id());
    assert!(!out.response.replaced);
    assert_eq!(out.entry.model, "site-load@1");
    assert_eq!(out.entry.version_id, manifests[0].id);
    assert_eq!(out.entry.sector, site.sector.as_str());
    // A backtest from a past origin is issued at the origin.
    assert_eq!(out.entry.issued_unix_s, origin_unix_s);
    assert_eq!(
        out.forecast.timestamps_unix_s,
        site_series.telemetry.timestamps[origin..]
    );
    // Only the enrollment, the join, the fetch and the forecast left the site.
    assert_eq!(
        *sent.0.lock().unwrap(),
        ["Enroll", "Join", "FetchModel", "PublishSiteForecast"]
    );

    // The same version served by the coordinator gives the same forecast.
    let request = coordinator::forecast::request_from_series(
        "site-load@1",
        site_series,
        &site,
        Target::Load,
        origin,
        STEPS as u32,
        (60 * 24, 48),
    )
    .unwrap();
    let mut market = forecast_client_with(channel.clone(), BOARD_READER);
    let served = market.forecast(request).await.unwrap().into_inner();
    assert_eq!(served.version_id, manifests[0].id);
    let served_p50 = &served
        .quantiles
        .iter()
        .find(|q| (q.level - 0.5).abs() < 1e-6)
        .unwrap()
        .values_kw;
    for (local, remote) in out.forecast.p50_kw.iter().zip(served_p50) {
        assert!(
            (local - f64::from(*remote)).abs() < 1e-4,
            "{local} vs {remote}"
        );
    }
    let actual: Vec<f64> = site_series.telemetry.load_kw.as_ref().unwrap()[origin..]
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mean_p50, mean_actual) = (mean(&out.forecast.p50_kw), mean(&actual));
    assert!(
        mean_p50 > 0.3 * mean_actual && mean_p50 < 3.0 * mean_actual,
        "median forecast {mean_p50:.1} kW against actual {mean_actual:.1} kW"
    );

    // The board holds it under the right manifest id.
    let board = market
        .query_board(QueryBoardRequest {
            site: site.site_id.clone(),
            from_unix_s: origin_unix_s,
            to_unix_s: origin_unix_s + STEPS as i64 * 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(board.forecasts.len(), 1);
    let on_board = &board.forecasts[0];
    assert_eq!(on_board.participant_id, link.participant_id());
    assert_eq!(on_board.version_id, manifests[0].id);
    assert_eq!(on_board.model, "site-load@1");
    // The board stores JSON, whose f64 parse may differ in the last digit.
    assert_eq!(on_board.p50_kw.len(), STEPS);
    for (stored, sent) in on_board.p50_kw.iter().zip(&out.forecast.p50_kw) {
        assert!((stored - sent).abs() < 1e-12, "{stored} vs {sent}");
    }

    // A publish naming a manifest id the registry does not hold is refused.
    let mut unknown_id = out.forecast.clone();
    unknown_id.version_id = "cd".repeat(32);
    let status = status_of(
        publish_site_forecast(&link, channel.clone(), unknown_id)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains(&"cd".repeat(32)), "{status:?}");

    // Another key: the manifest does not verify and the model is not used.
    let other_key = SiteIdentity::generate().unwrap().public_key();
    let err = fetch_model(&link, channel.clone(), "site-load", &other_key)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ParticipantError::UntrustedModel(m) if m.contains("signature")),
        "{err:?}"
    );
    // Weights altered in transit: the participant's own check refuses them.
    let storage = coordinator::storage::Storage::in_process(&coord_dir).unwrap();
    let artifact = |m: &VersionManifest| m.content.weights.sha256.clone();
    let mut bytes = storage.raw_artifact(&artifact(&manifests[0])).unwrap();
    verify_fetched(&listed.versions[0].manifest_json, &bytes, &key).unwrap();
    bytes[40] ^= 0x01;
    let err = verify_fetched(&listed.versions[0].manifest_json, &bytes, &key)
        .err()
        .unwrap();
    assert!(
        matches!(&err, ParticipantError::UntrustedModel(m) if m.contains("sha256")),
        "{err:?}"
    );
    // A tampered artifact on the coordinator: it refuses to hand it out.
    let mut stored = storage.raw_artifact(&artifact(&manifests[1])).unwrap();
    stored[100] ^= 0x01;
    storage
        .overwrite_artifact(&artifact(&manifests[1]), &stored)
        .unwrap();
    let status = status_of(
        fetch_model(&link, channel.clone(), "site-load@2", &key)
            .await
            .err()
            .unwrap(),
    );
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("refusing"), "{status:?}");
    let status = status_of(
        fetch_model(&link, channel.clone(), "no-such-model", &key)
            .await
            .err()
            .unwrap(),
    );
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("no-such-model"), "{status:?}");

    // Unsigned, unenrolled and forged fetches.
    let mut raw = ForecastClient::new(channel.clone());
    let unsigned = FetchModelRequest {
        auth: None,
        model: "site-load".into(),
    };
    let err = raw.fetch_model(unsigned.clone()).await.err().unwrap();
    assert_eq!(err.code(), Code::Unauthenticated);
    let stranger = SiteIdentity::generate().unwrap();
    let method = proto::method::FETCH_MODEL;
    let mut unenrolled = unsigned.clone();
    unenrolled.auth = Some(stranger.authorize("p999999", method, "", 0, &unsigned));
    let err = raw.fetch_model(unenrolled).await.err().unwrap();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("unknown participant"), "{err:?}");
    let mut forged = unsigned.clone();
    forged.auth = Some(stranger.authorize(link.participant_id(), method, "", 0, &unsigned));
    let err = raw.fetch_model(forged).await.err().unwrap();
    assert_eq!(err.code(), Code::Unauthenticated);
    // A signature for the board's method does not open the fetch.
    let mut other_method = unsigned.clone();
    other_method.auth = Some(link.authorize(proto::method::PUBLISH_SITE_FORECAST, &unsigned));
    let err = raw.fetch_model(other_method).await.err().unwrap();
    assert_eq!(err.code(), Code::Unauthenticated);
    coord.stop().await;
}
