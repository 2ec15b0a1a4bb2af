//! Raw telemetry never leaves a site: daemons doing real MLP training on synthetic sites run
//! masked rounds over real gRPC while a `WireTap` records every message they send. No message
//! contains any site's load readings (as f64, or as consecutive f32 pairs), its timestamps, or
//! its training or holdout samples (normalized targets and features as consecutive f32 pairs),
//! nor its federated-evaluation scores; the only message kinds are the protocol's, and updates
//! and scores travel masked, never as plaintext floats.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use coordinator::{FederationSpec, InitialWeights, Protection};
use datasets::synth::{FleetConfig, generate_fleet};
use datasets::{Resolution, SplitSpec, Target, prepare_fleet};
use participant::client::WireTap;
use participant::{Daemon, MlpTrainer, SiteIdentity};
use prost::Message;
use proto::v1::{self as pb, upload_chunk};

/// Every message one daemon sent: (gRPC method, protobuf bytes).
#[derive(Default)]
struct Recorder(Mutex<Vec<(&'static str, Vec<u8>)>>);

impl WireTap for Recorder {
    fn outgoing(&self, method: &'static str, encoded: &[u8]) {
        if let Ok(mut log) = self.0.lock() {
            log.push((method, encoded.to_vec()));
        }
    }
}

/// An f32 whose bit pattern is not a short, common one (0, 1, 0.5, ...): those occur in any
/// binary message and prove nothing.
fn distinctive32(v: f32) -> bool {
    v.to_bits() & 0xFFFF != 0
}

fn distinctive64(v: f64) -> bool {
    v.to_bits() & 0xFFFF_FFFF != 0
}

/// 8-byte needles: consecutive f32 pairs of `values` (both distinctive).
fn f32_pairs(values: &[f32], out: &mut Vec<[u8; 8]>) {
    for w in values.windows(2) {
        if distinctive32(w[0]) && distinctive32(w[1]) {
            let mut needle = [0u8; 8];
            needle[..4].copy_from_slice(&w[0].to_le_bytes());
            needle[4..].copy_from_slice(&w[1].to_le_bytes());
            out.push(needle);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_outgoing_message_carries_telemetry() {
    let fleet = generate_fleet(&FleetConfig {
        sites: 4,
        days: 30,
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
    .expect("prepare fleet");
    assert_eq!(
        sites.len(),
        4,
        "every synthetic site of the mix meters load"
    );
    let first = &sites[0].train;
    let config = models::ForecasterConfig::new(first.n_features, first.horizon)
        .with_hidden(vec![16])
        .with_batch_size(64);
    let initial = models::to_flat(&config.init(&models::inference_device()).unwrap()).unwrap();
    let d = initial.len();

    let dir = tempfile::tempdir().unwrap();
    let spec = FederationSpec {
        min_participants: 4,
        model_spec_json: serde_json::to_string(&config).unwrap(),
        initial_weights: InitialWeights::Values(initial.clone()),
        local_epochs: 1,
        evaluate: true,
        ..FederationSpec::vector("load", d as u64, Protection::Masked, 2)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let recorders: Vec<Arc<Recorder>> = sites.iter().map(|_| Arc::default()).collect();
    let handles = sites
        .iter()
        .zip(&recorders)
        .map(|(site, recorder)| {
            let trainer = Arc::new(
                MlpTrainer::new(site.train.clone()).with_holdout(site.test.clone(), Target::Load),
            );
            let daemon = Daemon::new(
                settings(&coord.url(), &site.site.site_id, "load"),
                Arc::new(SiteIdentity::generate().unwrap()),
                trainer,
            )
            .unwrap()
            .with_tap(recorder.clone());
            tokio::spawn(daemon.run(std::future::pending()))
        })
        .collect();
    let summaries = join_all(handles, Duration::from_secs(120)).await;
    assert!(
        summaries
            .iter()
            .all(|s| s.final_version == Some(2) && s.rounds_uploaded == 4),
        "{summaries:?}"
    );
    coord.stop().await;
    // What each site scored (and sent, masked) in the evaluation rounds of versions 1 and 2.
    let version_weights: Vec<Vec<f32>> = coordinator::load_versions(dir.path(), "load")
        .unwrap()
        .iter()
        .skip(1)
        .map(|v| {
            assert!(
                matches!(v.evaluation, coordinator::VersionEvaluation::Scored { .. }),
                "{v:?}"
            );
            let storage = coordinator::storage::Storage::in_process(dir.path()).unwrap();
            proto::chunk::bytes_to_f32(&storage.raw_artifact(&v.sha256).unwrap()).unwrap()
        })
        .collect();
    let (_, trained) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert!(
        max_abs_diff(&trained, &initial) > 1e-4,
        "training changed nothing"
    );

    let allowed = [
        "Enroll",
        "Join",
        "GetTask",
        "DownloadWeights",
        "SubmitProtocol",
        "UploadUpdate",
    ];
    for ((site, recorder), telemetry) in sites.iter().zip(&recorders).zip(&fleet.telemetry) {
        let log = recorder.0.lock().unwrap();
        assert!(!log.is_empty());
        let mut windows: HashSet<[u8; 8]> = HashSet::new();
        let mut masked_uploads = 0;
        for (method, bytes) in log.iter() {
            assert!(allowed.contains(method), "unexpected message kind {method}");
            // Every message decodes as the protocol message of its method.
            match *method {
                "UploadUpdate" => {
                    let chunk = pb::UploadChunk::decode(bytes.as_slice()).unwrap();
                    if let Some(upload_chunk::Part::Header(h)) = chunk.part {
                        assert_eq!(
                            h.element_type,
                            pb::ElementType::Masked as i32,
                            "an update left unmasked"
                        );
                        assert_eq!(h.sample_count, 0, "masked uploads carry no sample count");
                        // The update is one word per parameter, plus weight and framing.
                        assert!(h.total_bytes < 4 * (d as u64 + 1) + 4096);
                        masked_uploads += 1;
                    }
                }
                "SubmitProtocol" => {
                    pb::ProtocolSubmission::decode(bytes.as_slice()).unwrap();
                }
                "Enroll" => {
                    pb::EnrollRequest::decode(bytes.as_slice()).unwrap();
                }
                "Join" => {
                    pb::JoinRequest::decode(bytes.as_slice()).unwrap();
                }
                "GetTask" => {
                    pb::TaskRequest::decode(bytes.as_slice()).unwrap();
                }
                "DownloadWeights" => {
                    pb::DownloadRequest::decode(bytes.as_slice()).unwrap();
                }
                _ => unreachable!(),
            }
            for w in bytes.windows(8) {
                windows.insert(w.try_into().unwrap());
            }
        }
        assert_eq!(
            masked_uploads, 4,
            "one masked upload per round: 2 updates, 2 score vectors"
        );

        let load: Vec<f64> = telemetry
            .load_kw
            .as_ref()
            .expect("load column")
            .iter()
            .flatten()
            .copied()
            .collect();
        let mut needles: Vec<[u8; 8]> = load
            .iter()
            .filter(|v| distinctive64(**v))
            .map(|v| v.to_le_bytes())
            .collect();
        let load32: Vec<f32> = load.iter().map(|v| *v as f32).collect();
        f32_pairs(&load32, &mut needles);
        needles.extend(telemetry.timestamps.iter().map(|t| t.to_le_bytes()));
        let train = &site.train;
        f32_pairs(&train.y, &mut needles);
        f32_pairs(&train.x, &mut needles);
        f32_pairs(&site.test.y, &mut needles);
        f32_pairs(&site.test.x, &mut needles);
        for weights in &version_weights {
            let scores =
                models::HoldoutScores::measure(&config, weights, &site.test, Target::Load).unwrap();
            let (shared, _) = scores.to_shared();
            let before = needles.len();
            f32_pairs(&shared, &mut needles);
            assert!(needles.len() >= before + 3, "scores make needles");
        }
        assert!(needles.len() > 10_000, "too few needles: {}", needles.len());
        let leaked = needles.iter().filter(|n| windows.contains(*n)).count();
        assert_eq!(
            leaked, 0,
            "site {}: {leaked} telemetry encodings found in outgoing messages",
            site.site.site_id
        );
    }
}
