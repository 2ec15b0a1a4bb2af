//! Seed inputs for the fuzz targets, each made by gridfed's own encoders: real protocol
//! messages, a real fleet's Parquet and meter export, a real registry version and its export,
//! the documented configuration examples. Fuzzing starts from valid inputs and mutates
//! inward; a target that only ever sees random bytes never gets past its first length check.

use std::sync::Arc;

use prost::Message;

use super::harness;

type Seeds = Vec<(String, Vec<u8>)>;

/// (target, [(seed name, bytes)]) for every target.
pub fn all() -> Vec<(&'static str, Seeds)> {
    let dir = tempfile::tempdir().unwrap();
    let (manifest_json, export) = registry_version(dir.path());
    vec![
        ("proto_messages", proto_messages()),
        ("secagg_messages", secagg_messages()),
        ("he_frames", he_frames()),
        ("model_artifact", vec![("export".into(), export)]),
        ("telemetry_parquet", telemetry_parquet(dir.path())),
        ("telemetry_csv", telemetry_csv(dir.path())),
        ("configs", configs(dir.path())),
        ("market_bids", market_bids()),
        (
            "version_manifest",
            vec![("registry-version".into(), manifest_json)],
        ),
    ]
}

fn selected(selector: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![selector as u8];
    out.extend_from_slice(bytes);
    out
}

fn proto_messages() -> Seeds {
    use proto::forecast as f;
    use proto::registry as r;
    use proto::v1 as v;
    let identity = participant::SiteIdentity::generate().unwrap();
    let join = {
        let mut m = v::JoinRequest {
            auth: None,
            tag: "residential-load".into(),
        };
        m.auth = Some(identity.authorize("p-1", proto::method::JOIN, "", 0, &m));
        m
    };
    let history = f::Series {
        timestamps_unix_s: (0..48).map(|i| 1_700_000_000 + i * 3600).collect(),
        values_kw: (0..48).map(|i| 1.0 + f64::from(i % 24) * 0.1).collect(),
    };
    let messages: Vec<(usize, Vec<u8>)> = vec![
        (
            0,
            v::EnrollRequest {
                token: "enroll-token-1".into(),
                public_key: identity.public_key().to_vec(),
                site_label: "feeder 12".into(),
            }
            .encode_to_vec(),
        ),
        (1, join.encode_to_vec()),
        (
            2,
            v::TaskRequest {
                auth: join.auth.clone(),
                federation: "residential-load".into(),
                wait_ms: 10_000,
            }
            .encode_to_vec(),
        ),
        (
            3,
            v::ProtocolSubmission {
                auth: join.auth.clone(),
                federation: "residential-load".into(),
                round: 3,
                phase: v::SecAggPhase::ShareKeys as i32,
                payload: secagg_signed_message(),
            }
            .encode_to_vec(),
        ),
        (
            4,
            v::UploadChunk {
                part: Some(v::upload_chunk::Part::Header(v::UploadHeader {
                    auth: join.auth.clone(),
                    federation: "residential-load".into(),
                    round: 3,
                    element_type: v::ElementType::F32 as i32,
                    total_bytes: 4096,
                    sha256: vec![7; 32],
                    sample_count: 120,
                })),
            }
            .encode_to_vec(),
        ),
        (
            4,
            v::UploadChunk {
                part: Some(v::upload_chunk::Part::Data(vec![1u8; 64].into())),
            }
            .encode_to_vec(),
        ),
        (
            6,
            f::ForecastRequest {
                model: "residential-load@production".into(),
                history: Some(history),
                horizon_steps: 24,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            11,
            r::PublishSpecRequest {
                spec_toml: SPEC.into(),
            }
            .encode_to_vec(),
        ),
        (
            13,
            r::ShowVersionRequest {
                model_ref: "res-load@3".into(),
            }
            .encode_to_vec(),
        ),
        (
            17,
            r::RepairChunk {
                part: Some(r::repair_chunk::Part::Header(r::RepairHeader {
                    model: "res-load".into(),
                    length: 4096,
                    sha256: vec![1; 32],
                })),
            }
            .encode_to_vec(),
        ),
        (
            18,
            v::JoinResponse {
                federation: "residential-load".into(),
                protection: v::ProtectionMode::Masked as i32,
                model_spec_json: r#"{"n_features":220,"horizon":24}"#.into(),
                coordinator_key: vec![5; 32],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ];
    messages
        .into_iter()
        .enumerate()
        .map(|(i, (selector, bytes))| {
            (
                format!("{i:02}-{}", harness::PROTO_MESSAGES[selector]),
                selected(selector, &bytes),
            )
        })
        .collect()
}

/// A signed ShareKeys message, as a participant sends it.
fn secagg_signed_message() -> Vec<u8> {
    use crypto::secagg::*;
    let key = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let header = MessageHeader {
        round: RoundId {
            federation: FederationId::from_name("residential-load"),
            round: 3,
        },
        phase: Phase::ShareKeys,
        sender: Party::Participant(ParticipantId(2)),
        recipient: Party::Coordinator,
    };
    SignedMessage::sign(header, share_list().encode(), &key).to_bytes()
}

fn share_list() -> crypto::secagg::ShareList {
    use crypto::secagg::*;
    ShareList {
        shares: (1..4)
            .map(|peer| EncryptedShare {
                peer: ParticipantId(peer),
                ciphertext: vec![peer as u8; 80],
            })
            .collect(),
    }
}

fn secagg_messages() -> Seeds {
    use crypto::secagg::*;
    let plan = RoundPlan {
        params: SecAggParams::suggested(8, 1000).unwrap(),
        graph_seed: [4; 32],
        roster: (1..=8)
            .map(|id| RosterEntry {
                id: ParticipantId(id),
                verifying_key: [id as u8; 32],
            })
            .collect(),
    };
    let advert = KeyAdvertisement {
        cipher_public: [1; 32],
        mask_public: [2; 32],
        self_seed_commitment: [3; 32],
    };
    let signed = secagg_signed_message();
    let directory = KeyDirectory {
        advertised: (1..=8).map(ParticipantId).collect(),
        neighbour_adverts: vec![SignedMessage::from_bytes(&signed, DEFAULT_MESSAGE_LIMIT).unwrap()],
    };
    let unmask = UnmaskRequest {
        survivors: vec![ParticipantId(1), ParticipantId(2), ParticipantId(5)],
        dropped: vec![ParticipantId(3)],
    };
    vec![
        ("signed-share-keys".into(), selected(0, &signed)),
        ("round-plan".into(), selected(1, &plan.encode())),
        ("key-advertisement".into(), selected(2, &advert.encode())),
        ("key-directory".into(), selected(3, &directory.encode())),
        ("share-list".into(), selected(4, &share_list().encode())),
        ("unmask-request".into(), selected(5, &unmask.encode())),
    ]
}

fn he_frames() -> Seeds {
    use crypto::he::*;
    let mut he = harness::build_he_context();
    let mut noise = NoiseSource::from_seed(2);
    let words: Vec<u32> = (0..harness::HE_SLOTS as u32).collect();
    let sealed = he.key.encrypt(&words, &mut noise).unwrap().seal(&he.sender);
    let mut aggregator = EncryptedAggregator::new(&he.key, harness::HE_SLOTS).unwrap();
    aggregator
        .add_sealed(
            crypto::secagg::ParticipantId(9),
            &sealed,
            &he.sender.verifying_key(),
        )
        .unwrap();
    let aggregate = aggregator.finish().unwrap();
    let set = DecryptorSet::new(he.committee.plan(), &[MemberIndex(1), MemberIndex(2)]).unwrap();
    let key = he.key.clone();
    let partial = he.members[0]
        .partial_decrypt(&key, &aggregate, &set, &mut noise)
        .unwrap();
    let commitment = he.members[0].commitment().to_vec();
    let public_share = he.members[0]
        .reveal_public_share(&he.commitments)
        .unwrap()
        .to_vec();
    let advertisement = he.exchange.advertisement(&he.members[0]);
    vec![
        ("committee".into(), selected(0, &he.committee.encode())),
        ("commitment".into(), selected(1, &commitment)),
        ("public-share".into(), selected(2, &public_share)),
        ("ciphertext".into(), selected(3, &sealed)),
        ("partial".into(), selected(4, &partial)),
        ("exchange-advertisement".into(), selected(5, &advertisement)),
        (
            "sealed-fragment".into(),
            selected(6, &vec![0x5a; sealed_fragment_len()]),
        ),
    ]
}

const SPEC: &str = r#"
name = "res-load"
target = "load"
sector = "residential"
context = 24
horizon = 6
protection = "masked"
rounds = 3

[architecture]
hidden = [4]

[training]
min_participants = 3

[deadlines]
upload_s = 60
"#;

/// A registry version signed by a real coordinator registry, as JSON, and its export
/// directory as the `model_artifact` input (u16 manifest length, manifest, weights).
fn registry_version(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    use coordinator::registry::{ModelSpec, Registry, write_export};
    use coordinator::{
        CoordinatorConfig, Hub, Metrics, ModelVersion, Protection, VersionEvaluation,
    };
    let state = dir.join("coordinator");
    let mut hub = Hub::open(
        CoordinatorConfig::new(&state, "enroll-token-1", vec![]),
        1_000,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let registry = Registry::open(&state).unwrap();
    let spec = ModelSpec::from_toml(SPEC).unwrap();
    let parameters = spec.forecaster_config().num_params();
    registry.publish(spec, &mut hub, 2_000).unwrap();
    let artifacts = coordinator::storage::Storage::in_process(&state)
        .unwrap()
        .artifacts()
        .unwrap();
    let versions: Vec<ModelVersion> = (0..=1u64)
        .map(|v| {
            let weights: Vec<f32> = (0..parameters)
                .map(|i| (i as f32 + v as f32) * 0.01)
                .collect();
            ModelVersion {
                federation: "res-load".into(),
                version: v,
                round: v,
                parent: v.checked_sub(1),
                length: parameters as u64,
                sha256: artifacts
                    .put(&proto::chunk::f32_to_bytes(&weights))
                    .unwrap(),
                participants: 3,
                protection: Protection::Masked,
                created_unix_ms: 1_000 + v,
                evaluation: VersionEvaluation::NotRequested,
                dp: None,
            }
        })
        .collect();
    registry.sync("res-load", &versions).unwrap();
    let manifest = registry.versions("res-load").unwrap().remove(0);
    let weights = registry.load_weights(&manifest).unwrap();
    let out = dir.join("export");
    write_export(&manifest, &weights, &registry.public_key(), &out).unwrap();
    let manifest_file = std::fs::read(out.join("manifest.json")).unwrap();
    let weights_file = std::fs::read(out.join("weights.safetensors")).unwrap();
    let mut artifact = (manifest_file.len() as u16).to_le_bytes().to_vec();
    artifact.extend_from_slice(&manifest_file);
    artifact.extend_from_slice(&weights_file);
    (std::fs::read(out.join("version.json")).unwrap(), artifact)
}

fn telemetry_parquet(dir: &std::path::Path) -> Seeds {
    let fleet = harness::seed_fleet();
    let path = dir.join("fleet.parquet");
    datasets::writer::write_telemetry(&path, &fleet.telemetry).unwrap();
    let one = dir.join("one.parquet");
    datasets::writer::write_telemetry(&one, &fleet.telemetry[..1]).unwrap();
    datasets::reader::read_telemetry(&path, harness::fuzz_sites()).unwrap();
    vec![
        ("two-sites".into(), std::fs::read(path).unwrap()),
        ("one-site".into(), std::fs::read(one).unwrap()),
    ]
}

fn telemetry_csv(dir: &std::path::Path) -> Seeds {
    let fleet = harness::seed_fleet();
    let path = dir.join("export.csv");
    datasets::export::write_local_csv(&path, &fleet.telemetry[0], chrono_tz::Europe::Berlin)
        .unwrap();
    let comma = std::fs::read_to_string(&path).unwrap();
    harness::telemetry_csv(comma.as_bytes());
    // The European spreadsheet default: `;` between fields, `,` as the decimal mark.
    let semicolon: String = comma
        .lines()
        .map(|l| l.replace(',', ";").replace('.', ","))
        .collect::<Vec<_>>()
        .join("\n");
    vec![
        ("comma".into(), comma.into_bytes()),
        ("semicolon-decimal-comma".into(), semicolon.into_bytes()),
    ]
}

fn configs(dir: &std::path::Path) -> Seeds {
    let participant = "coordinator = \"https://coordinator.example:7400\"\nca_cert = \"ca.pem\"\n\
        key_file = \"site.key\"\nenrollment_token = \"issued-by-the-operator\"\n\
        site_label = \"feeder-12\"\nfederation_tag = \"residential-load\"\n\n[data]\n\
        dir = \"telemetry\"\nsite_id = \"site-007\"\ntarget = \"load\"\nresolution = \"1h\"\n\n\
        [limits]\nthreads = 1\nmax_round_seconds = 600\nmax_epsilon = 8.0\n";
    // The documented examples, as an operator copies them.
    let coordinator = doc_block(
        include_str!("../../docs/federation.md"),
        "### coordinator.toml",
    );
    let replica = doc_block(
        include_str!("../../docs/deployment.md"),
        "## Forecast replicas",
    )
    .replace(
        "<64 hex digits: gridfed coordinator public-key --config coordinator.toml>",
        &"01".repeat(32),
    );
    let market = doc_block(include_str!("../../docs/market.md"), "## Configuration");
    // Seeds are only useful if they parse: check each with its own parser.
    participant::ParticipantConfig::from_toml(participant).unwrap();
    coordinator::CoordinatorConfig::from_toml(&coordinator).unwrap();
    coordinator::replica::ReplicaConfig::from_toml(&replica).unwrap();
    market::MarketConfig::from_toml(&market).unwrap();
    let sites = dir.join("sites.json");
    datasets::metadata::write_metadata(&sites, harness::fuzz_sites()).unwrap();
    vec![
        ("participant".into(), selected(0, participant.as_bytes())),
        ("coordinator".into(), selected(1, coordinator.as_bytes())),
        ("replica".into(), selected(2, replica.as_bytes())),
        ("model-spec".into(), selected(3, SPEC.as_bytes())),
        ("market".into(), selected(4, market.as_bytes())),
        (
            "sites-json".into(),
            selected(5, &std::fs::read(sites).unwrap()),
        ),
    ]
}

fn market_bids() -> Seeds {
    use market::{HourBids, Order, Side};
    let day: Vec<HourBids> = (0..market::HOURS)
        .map(|h| {
            HourBids::new(
                [
                    Order {
                        side: Side::Buy,
                        level: 200,
                        quantity_wh: 1_500 + h as u32,
                    },
                    Order {
                        side: Side::Sell,
                        level: 40,
                        quantity_wh: 700,
                    },
                ],
                256,
                0,
                h,
            )
            .unwrap()
        })
        .collect();
    vec![("day".into(), market::wire::encode_day_bids(&day))]
}

/// The first ```toml block after `heading` in a document.
fn doc_block(doc: &str, heading: &str) -> String {
    let after = doc.split_once(heading).expect("documented heading").1;
    let start = after.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let body = &after[start..];
    body[..body.find("```").expect("closed block")].to_string()
}
