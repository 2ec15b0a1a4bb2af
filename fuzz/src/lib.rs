//! The fuzz targets' bodies: one function per decoder family that takes bytes from outside
//! gridfed (the network, files an operator hands over, configuration). Each runs the same code
//! path the services and commands run and must never panic; where a format is canonical it
//! also checks decode -> encode -> the same bytes.
//!
//! Used by the cargo-fuzz binaries in `fuzz_targets/` (nightly, libFuzzer) and, on stable,
//! by `tests/fuzz_corpus.rs` in the main workspace, which replays the committed corpus under
//! `fuzz/corpus/<target>/` and regenerates its seeds. Inputs that choose among several decoders
//! start with a selector byte (taken modulo the number of decoders).

use std::path::Path;
use std::sync::OnceLock;

use prost::Message;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every fuzz target by name (the directory of its corpus) and body.
pub const TARGETS: &[(&str, Target)] = &[
    ("proto_messages", proto_messages),
    ("secagg_messages", secagg_messages),
    ("he_frames", he_frames),
    ("model_artifact", model_artifact),
    ("telemetry_parquet", telemetry_parquet),
    ("telemetry_csv", telemetry_csv),
    ("configs", configs),
    ("market_bids", market_bids),
    ("version_manifest", version_manifest),
];

/// Splits off the selector byte.
fn select(data: &[u8], choices: usize) -> Option<(usize, &[u8])> {
    let (first, rest) = data.split_first()?;
    Some((usize::from(*first) % choices, rest))
}

/// Decodes `bytes` as `M` through the services' codec; if it decodes, its encoding decodes and
/// re-encodes to the same bytes (protobuf input need not be canonical, prost's output is; bytes
/// rather than values are compared because a NaN is not equal to itself).
fn proto_round_trip<M: Message + Default>(bytes: &[u8]) {
    if let Ok(message) = proto::codec::decode_message::<M>(bytes) {
        let encoded = message.encode_to_vec();
        let again =
            proto::codec::decode_message::<M>(&encoded[..]).expect("a re-encoded message decodes");
        assert_eq!(
            again.encode_to_vec(),
            encoded,
            "protobuf round trip changed the message"
        );
    }
}

/// The number of protobuf messages [`proto_messages`] chooses from; seeds use the index of
/// their message in [`PROTO_MESSAGES`].
pub const PROTO_MESSAGES: &[&str] = &[
    "EnrollRequest",
    "JoinRequest",
    "TaskRequest",
    "ProtocolSubmission",
    "UploadChunk",
    "DownloadRequest",
    "ForecastRequest",
    "PublishSiteForecastRequest",
    "QueryBoardRequest",
    "FetchModelRequest",
    "DescribeModelRequest",
    "PublishSpecRequest",
    "ListVersionsRequest",
    "ShowVersionRequest",
    "PromoteRequest",
    "RollbackRequest",
    "ExportRequest",
    "RepairChunk",
    // What a participant, a market engine or the CLI decodes from the coordinator.
    "JoinResponse",
    "RoundTask",
    "DownloadChunk",
    "ForecastResponse",
    "QueryBoardResponse",
    "FetchModelChunk",
    "ExportChunk",
    "ListVersionsResponse",
];

/// Every protobuf message a coordinator accepts (requests of the Federation, Forecast and
/// Registry services) or a client accepts (their responses), decoded as the services do.
pub fn proto_messages(data: &[u8]) {
    use proto::forecast as f;
    use proto::registry as r;
    use proto::v1 as v;
    let Some((which, bytes)) = select(data, PROTO_MESSAGES.len()) else {
        return;
    };
    match which {
        0 => proto_round_trip::<v::EnrollRequest>(bytes),
        1 => proto_round_trip::<v::JoinRequest>(bytes),
        2 => proto_round_trip::<v::TaskRequest>(bytes),
        3 => proto_round_trip::<v::ProtocolSubmission>(bytes),
        4 => proto_round_trip::<v::UploadChunk>(bytes),
        5 => proto_round_trip::<v::DownloadRequest>(bytes),
        6 => proto_round_trip::<f::ForecastRequest>(bytes),
        7 => proto_round_trip::<f::PublishSiteForecastRequest>(bytes),
        8 => proto_round_trip::<f::QueryBoardRequest>(bytes),
        9 => proto_round_trip::<f::FetchModelRequest>(bytes),
        10 => proto_round_trip::<f::DescribeModelRequest>(bytes),
        11 => proto_round_trip::<r::PublishSpecRequest>(bytes),
        12 => proto_round_trip::<r::ListVersionsRequest>(bytes),
        13 => proto_round_trip::<r::ShowVersionRequest>(bytes),
        14 => proto_round_trip::<r::PromoteRequest>(bytes),
        15 => proto_round_trip::<r::RollbackRequest>(bytes),
        16 => proto_round_trip::<r::ExportRequest>(bytes),
        17 => proto_round_trip::<r::RepairChunk>(bytes),
        18 => proto_round_trip::<v::JoinResponse>(bytes),
        19 => proto_round_trip::<v::RoundTask>(bytes),
        20 => proto_round_trip::<v::DownloadChunk>(bytes),
        21 => proto_round_trip::<f::ForecastResponse>(bytes),
        22 => proto_round_trip::<f::QueryBoardResponse>(bytes),
        23 => proto_round_trip::<f::FetchModelChunk>(bytes),
        24 => proto_round_trip::<r::ExportChunk>(bytes),
        _ => proto_round_trip::<r::ListVersionsResponse>(bytes),
    }
}

/// The SecAgg+ wire format: the signed envelope and every payload. The encoding is canonical:
/// whatever decodes re-encodes to exactly the input.
pub fn secagg_messages(data: &[u8]) {
    use crypto::secagg::{
        DEFAULT_MESSAGE_LIMIT, KeyAdvertisement, KeyDirectory, RoundPlan, ShareList, SignedMessage,
        UnmaskRequest, UnmaskResponse,
    };
    fn canonical<T>(
        bytes: &[u8],
        decoded: Result<T, crypto::CryptoError>,
        encode: fn(&T) -> Vec<u8>,
    ) {
        if let Ok(message) = decoded {
            assert_eq!(
                encode(&message),
                bytes,
                "decode -> encode changed the bytes"
            );
        }
    }
    let Some((which, bytes)) = select(data, 7) else {
        return;
    };
    match which {
        0 => canonical(
            bytes,
            SignedMessage::from_bytes(bytes, DEFAULT_MESSAGE_LIMIT),
            |m| m.to_bytes(),
        ),
        1 => canonical(bytes, RoundPlan::decode(bytes), RoundPlan::encode),
        2 => canonical(
            bytes,
            KeyAdvertisement::decode(bytes),
            KeyAdvertisement::encode,
        ),
        3 => canonical(bytes, KeyDirectory::decode(bytes), KeyDirectory::encode),
        4 => canonical(bytes, ShareList::decode(bytes), ShareList::encode),
        5 => canonical(bytes, UnmaskRequest::decode(bytes), UnmaskRequest::encode),
        _ => canonical(bytes, UnmaskResponse::decode(bytes), UnmaskResponse::encode),
    }
}

/// A small encrypted-mode setup every HE frame is decoded against: a 3-member committee
/// (threshold 2) with its share commitments and collective key, built once from fixed seeds.
pub struct HeContext {
    pub committee: crypto::he::Committee,
    pub members: Vec<crypto::he::CommitteeMember>,
    pub commitments: crypto::he::ShareCommitments,
    pub key: crypto::he::CollectivePublicKey,
    pub sender: crypto::he::SigningKey,
    pub exchange: crypto::he::FragmentExchange,
}

/// Slots of the ciphertexts and partial decryptions the HE target decodes.
pub const HE_SLOTS: usize = 16;

pub fn he_context() -> &'static HeContext {
    static CONTEXT: OnceLock<HeContext> = OnceLock::new();
    CONTEXT.get_or_init(build_he_context)
}

/// [`he_context`]'s setup, owned (seeds need members that can decrypt): the same committee,
/// commitments and key for the same seeds; key shares dealt and accepted.
pub fn build_he_context() -> HeContext {
    {
        use crypto::he::{
            AggregationPlan, CollectivePublicKey, Committee, CommitteeMember, CommitteeSeat,
            CommitteeSize, MemberIndex, NoiseSource, PublicKeyShare, ShareCommitments, SigningKey,
            SlotCount, SummandCount, Threshold,
        };
        use crypto::secagg::{FederationId, ParticipantId};
        let plan = AggregationPlan::widest(
            SummandCount(10),
            CommitteeSize(3),
            Threshold(2),
            SlotCount(1_000),
        )
        .expect("fixed plan");
        let identities: Vec<SigningKey> = (1..=3u8)
            .map(|b| SigningKey::from_bytes(&[b; 32]))
            .collect();
        let seats = identities
            .iter()
            .zip(1u32..)
            .map(|(identity, id)| CommitteeSeat {
                participant: ParticipantId(id),
                verifying_key: identity.verifying_key(),
            })
            .collect();
        let committee =
            Committee::new(FederationId::from_name("fuzz"), 1, plan, seats).expect("committee");
        let mut noise = NoiseSource::from_seed(1);
        let mut members: Vec<CommitteeMember> = identities
            .into_iter()
            .zip(1u16..)
            .map(|(identity, index)| {
                CommitteeMember::new(committee.clone(), MemberIndex(index), identity, &mut noise)
            })
            .collect::<Result<_, _>>()
            .expect("members");
        let frames: Vec<&[u8]> = members.iter().map(|m| m.commitment()).collect();
        let commitments = ShareCommitments::collect(&committee, &frames).expect("commitments");
        let shares = members
            .iter()
            .map(|m| {
                let frame = m.reveal_public_share(&commitments)?;
                PublicKeyShare::open(frame, &committee, &commitments)
            })
            .collect::<Result<Vec<_>, _>>()
            .expect("shares");
        let key = CollectivePublicKey::combine(&committee, &shares).expect("key");
        let mut inboxes: Vec<Vec<_>> = members.iter().map(|_| Vec::new()).collect();
        for member in &mut members {
            for (recipient, frame) in member.deal(&mut noise).expect("deal") {
                inboxes[usize::from(recipient.0) - 1].push(frame);
            }
        }
        for (member, inbox) in members.iter_mut().zip(&inboxes) {
            let frames: Vec<&[u8]> = inbox.iter().map(|frame| frame.as_bytes()).collect();
            member.accept_fragments(&frames).expect("fragments");
        }
        HeContext {
            committee,
            members,
            commitments,
            key,
            sender: SigningKey::from_bytes(&[9; 32]),
            exchange: crypto::he::FragmentExchange::generate().expect("exchange key"),
        }
    }
}

/// Encrypted-mode frames from peers: committee rosters, share commitments, public key shares,
/// sealed ciphertexts, partial decryptions, exchange-key advertisements, sealed fragments.
pub fn he_frames(data: &[u8]) {
    use crypto::he::{
        Ciphertext, Committee, MemberIndex, PartialDecryption, PublicKeyShare, ShareCommitments,
        verify_exchange_key,
    };
    let Some((which, bytes)) = select(data, 7) else {
        return;
    };
    let he = he_context();
    match which {
        0 => {
            if let Ok(committee) = Committee::decode(bytes) {
                assert_eq!(
                    committee.encode(),
                    bytes,
                    "roster decode -> encode changed it"
                );
            }
        }
        1 => {
            let _ = ShareCommitments::collect(&he.committee, &[bytes]);
        }
        2 => {
            let _ = PublicKeyShare::open(bytes, &he.committee, &he.commitments);
        }
        3 => {
            let _ = Ciphertext::open(bytes, &he.sender.verifying_key(), &he.key, HE_SLOTS);
        }
        4 => {
            let _ = PartialDecryption::open(bytes, &he.committee, HE_SLOTS);
        }
        5 => {
            let _ = verify_exchange_key(&he.committee, MemberIndex(1), bytes);
        }
        _ => {
            let _ = he
                .exchange
                .open(&he.members[0], MemberIndex(2), &[7; 32], bytes);
        }
    }
}

/// A scratch directory per thread for the decoders that read files (the commands read paths,
/// so the fuzzed bytes go through the same file-reading code).
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("scratch directory"))
        .path()
}

fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("scratch write");
    path
}

/// A model artifact directory as `gridfed models export` writes it and participants load it:
/// `manifest.json` then `weights.safetensors`. Input: u16 manifest length (LE), manifest, weights.
pub fn model_artifact(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (manifest, weights) = rest.split_at(len);
    let dir = scratch().join("artifact");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("manifest.json"), manifest).expect("scratch write");
    std::fs::write(dir.join("weights.safetensors"), weights).expect("scratch write");
    let _ = models::ModelArtifact::load(&dir);
}

/// The sites a fuzzed telemetry file is validated against: two synthetic sites (a home with PV
/// and a building).
pub fn fuzz_sites() -> &'static [datasets::SiteMetadata] {
    static SITES: OnceLock<Vec<datasets::SiteMetadata>> = OnceLock::new();
    SITES.get_or_init(|| seed_fleet().sites)
}

/// The fleet seeds are written from (and fuzzed files validated against).
pub fn seed_fleet() -> datasets::synth::Fleet {
    datasets::synth::generate_fleet(&datasets::synth::FleetConfig {
        sites: 2,
        days: 3,
        ..Default::default()
    })
}

/// A Parquet telemetry file, read and validated as `gridfed datasets validate` and the
/// participant daemon read one.
pub fn telemetry_parquet(data: &[u8]) {
    // The `parquet` crate panics on some corrupt pages; `read_telemetry` catches that and
    // returns an error (see its docs). libFuzzer's hook would abort on any panic first, so
    // panics raised inside parquet/arrow go on to that catch, and every other panic (ours)
    // still aborts as a crash.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let upstream = info
                .location()
                .is_some_and(|l| l.file().contains("/parquet-") || l.file().contains("/arrow-"));
            if !upstream {
                previous(info);
            }
        }));
    });
    let path = write("telemetry.parquet", data);
    let _ = datasets::reader::read_telemetry(&path, fuzz_sites());
}

/// A meter export as `gridfed datasets import` reads it: naive local times in Europe/Berlin
/// (DST switches included), power in W, delimiter sniffed (`,` or `;` with decimal commas).
pub fn telemetry_csv(data: &[u8]) {
    let path = write("export.csv", data);
    let spec = datasets::import::CsvImport {
        site_id: "site-000".into(),
        timestamp_column: "timestamp".into(),
        value_column: "load_w".into(),
        target_column: "load_kw".into(),
        unit: datasets::import::PowerUnit::W,
        source_timezone: Some(chrono_tz::Europe::Berlin),
        timestamp_format: None,
        interval_end: false,
    };
    let _ = datasets::import::import_csv(&path, &spec);
}

/// Configuration files and specs: participant.toml, coordinator.toml, replica config, a
/// registry model spec, a market config, sites.json.
pub fn configs(data: &[u8]) {
    let Some((which, bytes)) = select(data, 6) else {
        return;
    };
    if which == 5 {
        let path = write("sites.json", bytes);
        let _ = datasets::metadata::read_metadata(&path);
        return;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match which {
        0 => {
            let _ = participant::ParticipantConfig::from_toml(text);
        }
        1 => {
            let _ = coordinator::CoordinatorConfig::from_toml(text);
        }
        2 => {
            let _ = coordinator::replica::ReplicaConfig::from_toml(text);
        }
        3 => {
            if let Ok(spec) = coordinator::registry::ModelSpec::from_toml(text) {
                // A spec that validates must also yield its federation and serving spec.
                let _ = spec.serving_spec();
            }
        }
        _ => {
            let _ = market::MarketConfig::from_toml(text);
        }
    }
}

/// A day of plain market bids (the authenticated baseline's wire format); canonical.
pub fn market_bids(data: &[u8]) {
    if let Ok(day) = market::wire::decode_day_bids(data, market::HOURS, 256, 0) {
        assert_eq!(
            market::wire::encode_day_bids(&day),
            data,
            "bid decode -> encode changed the bytes"
        );
    }
}

/// A signed version manifest as a market engine or participant receives it (registry JSON and
/// the participant's `SignedManifest`), verified under a fixed key.
pub fn version_manifest(data: &[u8]) {
    let key = [3u8; 32];
    if let Ok(manifest) = serde_json::from_slice::<coordinator::registry::VersionManifest>(data) {
        let _ = manifest.verify(&key);
    }
    if let Ok(manifest) = serde_json::from_slice::<models::manifest::SignedManifest>(data) {
        let _ = manifest.served(&key);
    }
}
