//! The coordinator core: participants, federations and their rounds, as plain synchronous code.
//! The gRPC shell authenticates and decodes requests, then calls these methods under one lock
//! (heavy calls on blocking threads); `now_ms` always comes from the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use proto::auth::SignedContext;
use proto::v1::RequestAuth;
use tracing::{info, warn};

use crate::artifacts::ArtifactStore;
use crate::auth::{NonceBook, parse_key};
use crate::config::{CoordinatorConfig, FederationSpec, InitialWeights};
use crate::metrics::Metrics;
use crate::round::{PlainCollecting, RoundError, WeightsRef};
use crate::storage::Storage;
use crate::store::{
    FederationRecord, ModelVersion, ParticipantRecord, StateStore, VersionEvaluation,
};
use crate::{CoordinatorError, round};

mod rounds;
mod status;

pub use status::{FederationStatus, RoundInFlight};

use rounds::next_round_state;

/// A participant is available for selection if it polled within this window.
const AVAILABLE_WINDOW_MS: u64 = 30_000;

/// The round slot of a federation.
#[derive(Debug)]
enum RoundState {
    Idle { since_ms: u64 },
    Plain(Box<PlainCollecting>),
    Masked(Box<round::masked::MaskedRound>),
    Encrypted(Box<round::encrypted::EncryptedRound>),
    Done,
}

impl RoundState {
    fn name(&self) -> &'static str {
        match self {
            RoundState::Idle { .. } => "idle",
            RoundState::Plain(_) => "collecting",
            RoundState::Masked(m) => m.phase_name(),
            RoundState::Encrypted(e) => e.phase_name(),
            RoundState::Done => "done",
        }
    }
}

struct Federation {
    spec: FederationSpec,
    record: FederationRecord,
    latest: ModelVersion,
    global: Arc<Vec<f32>>,
    global_bytes: Arc<Vec<u8>>,
    /// Server-momentum velocity (empty until the first FedAvgM round).
    velocity: Vec<f32>,
    members: BTreeSet<String>,
    last_seen: HashMap<String, u64>,
    /// Members of the last round that failed, and when it failed: each is selected again only
    /// once it has polled since, so a site that died mid-round is not picked into round after
    /// round (an encrypted key generation needs every member) until its liveness window lapses.
    failed_round_members: HashMap<String, u64>,
    round: RoundState,
    /// When a round last reported that it is waiting (see `Hub::report_waiting`).
    waiting_reported_ms: u64,
    /// A round this process began failed to finish and its in-flight record could not be
    /// cleared yet (e.g. the disk was full): cleared before the next round begins.
    unfinished_round: bool,
}

pub use crate::round::Task;

/// What an upload must look like before its bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSlot {
    pub expected_bytes: Option<u64>,
    /// After this an upload of the round is useless: the stream is ended by then.
    pub deadline_unix_ms: u64,
}

/// What an uploaded vector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    Plain,
    Masked,
    /// Encrypted mode: a participant's sealed ciphertext.
    Ciphertext,
    /// Encrypted mode: a decryptor's partial decryption of the aggregate.
    PartialDecryption,
}

impl UploadKind {
    fn label(self) -> &'static str {
        match self {
            UploadKind::Plain => "a plain update",
            UploadKind::Masked => "a masked update",
            UploadKind::Ciphertext => "a ciphertext",
            UploadKind::PartialDecryption => "a partial decryption",
        }
    }
}

/// What an upload header announced, once authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadMeta {
    pub round: u64,
    pub kind: UploadKind,
    /// FedAvg weight of a plain update (masked updates carry it inside).
    pub samples: u64,
}

/// The coordinator's whole state.
pub struct Hub {
    config: CoordinatorConfig,
    storage: Storage,
    store: StateStore,
    artifacts: Arc<dyn ArtifactStore>,
    participants: BTreeMap<String, ParticipantRecord>,
    nonces: NonceBook,
    federations: BTreeMap<String, Federation>,
    metrics: Arc<Metrics>,
    /// Bumped whenever a round changes phase, so long polls can wake up.
    generation: u64,
    /// Bumped whenever a version is committed or its evaluation recorded, so the registry
    /// signs manifests only then.
    settled: u64,
    identity: round::masked::CoordinatorIdentity,
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    // The OS RNG failing is unrecoverable for a coordinator that must draw round seeds.
    getrandom::fill(&mut seed).expect("operating system RNG unavailable");
    seed
}

/// Why a federation cannot be added: its name is taken, or its tag is used by the named one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FederationClash {
    Name,
    Tag(String),
}

impl Hub {
    /// Opens (or creates) the state under `config.data_dir`. An in-flight round found there was
    /// interrupted by a crash or restart: it is aborted cleanly and the next round starts fresh.
    pub fn open(
        config: CoordinatorConfig,
        now_ms: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CoordinatorError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| CoordinatorError::Artifact {
            path: config.data_dir.clone(),
            source,
        })?;
        let storage = Storage::open(&config.storage, &config.data_dir)?;
        let store = StateStore::in_storage(&storage)?;
        let artifacts = storage.artifacts()?;
        let identity = round::masked::CoordinatorIdentity::load_or_create(&config.data_dir)?;
        let mut participants = BTreeMap::new();
        for mut p in store.participants()? {
            if config.revoked.contains(&p.id) && !p.revoked {
                p.revoked = true;
                store.put_participant(&p)?;
            }
            participants.insert(p.id.clone(), p);
        }
        let mut hub = Self {
            nonces: NonceBook::new(now_ms.saturating_mul(1000)),
            storage,
            store,
            artifacts,
            participants,
            federations: BTreeMap::new(),
            metrics,
            generation: 0,
            settled: 0,
            identity,
            config: config.clone(),
        };
        for spec in &config.federations {
            let federation = hub.load_federation(spec, now_ms)?;
            hub.federations.insert(spec.name.clone(), federation);
        }
        Ok(hub)
    }

    fn load_federation(
        &self,
        spec: &FederationSpec,
        now_ms: u64,
    ) -> Result<Federation, CoordinatorError> {
        let record = match self.store.federation(&spec.name)? {
            Some(record) => record,
            None => {
                let weights = match &spec.initial_weights {
                    InitialWeights::Zeros(n) => vec![0.0f32; *n as usize],
                    InitialWeights::Values(v) => v.clone(),
                    InitialWeights::File(path) => {
                        let bytes =
                            std::fs::read(path).map_err(|source| CoordinatorError::Artifact {
                                path: path.clone(),
                                source,
                            })?;
                        proto::chunk::bytes_to_f32(&bytes)?
                    }
                };
                if weights.is_empty() || weights.len() as u64 > proto::MAX_VECTOR_BYTES / 8 {
                    return Err(CoordinatorError::Config(format!(
                        "federation `{}`: initial weights must have 1..={} values",
                        spec.name,
                        proto::MAX_VECTOR_BYTES / 8
                    )));
                }
                let bytes = proto::chunk::f32_to_bytes(&weights);
                let sha256 = self.artifacts.put(&bytes)?;
                let record = FederationRecord {
                    name: spec.name.clone(),
                    latest_version: 0,
                    next_round: 1,
                    velocity_sha256: None,
                    privacy_spent: None,
                };
                let v0 = ModelVersion {
                    federation: spec.name.clone(),
                    version: 0,
                    round: 0,
                    parent: None,
                    length: weights.len() as u64,
                    sha256,
                    participants: 0,
                    protection: spec.protection,
                    created_unix_ms: now_ms,
                    evaluation: VersionEvaluation::NotRequested,
                    dp: None,
                };
                match self.store.create_federation(&record, &v0)? {
                    // Another coordinator on the same database created it first.
                    Some(existing) => existing,
                    None => {
                        info!(federation = %spec.name, parameters = weights.len(), "federation created");
                        record
                    }
                }
            }
        };
        let latest = self
            .store
            .version(&spec.name, record.latest_version)?
            .ok_or_else(|| {
                CoordinatorError::Store(format!(
                    "federation `{}` lost its latest version",
                    spec.name
                ))
            })?;
        let bytes = self.artifacts.get(&latest.sha256)?;
        let global = proto::chunk::bytes_to_f32(&bytes)?;
        let velocity = match &record.velocity_sha256 {
            Some(sha) => proto::chunk::bytes_to_f32(&self.artifacts.get(sha)?)?,
            None => Vec::new(),
        };
        if let Some(stale) = self.store.in_flight(&spec.name)? {
            warn!(federation = %spec.name, round = stale.round, phase = %stale.phase,
                "aborting the round interrupted by a restart");
            self.store.end_round(&spec.name)?;
            self.metrics.round_aborted(&spec.name);
        }
        let members = self
            .participants
            .values()
            .filter(|p| p.federations.contains(&spec.name))
            .map(|p| p.id.clone())
            .collect();
        let round = next_round_state(spec, &record, &latest, now_ms);
        Ok(Federation {
            spec: spec.clone(),
            record,
            latest,
            global: Arc::new(global),
            global_bytes: Arc::new(bytes),
            velocity,
            members,
            last_seen: HashMap::new(),
            failed_round_members: HashMap::new(),
            round,
            waiting_reported_ms: 0,
            unfinished_round: false,
        })
    }

    /// The coordinator's Ed25519 verifying key (signs its protocol messages).
    pub fn coordinator_key(&self) -> [u8; 32] {
        self.identity.verifying_key()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The opened storage (the registry and the board open their stores in it).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Changes whenever any round changes phase.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Changes whenever a version settles more (committed, then evaluated).
    pub fn settled(&self) -> u64 {
        self.settled
    }

    pub fn long_poll_ms(&self) -> u32 {
        self.config.long_poll_ms
    }

    /// Registers a public key with an operator token; enrolling the same key again returns the
    /// same id.
    pub fn enroll(
        &mut self,
        token: &str,
        public_key: &[u8],
        site_label: &str,
        now_ms: u64,
    ) -> Result<String, CoordinatorError> {
        let token_ok = self
            .config
            .enrollment_tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if !token_ok {
            self.metrics.auth_failure();
            return Err(CoordinatorError::BadToken);
        }
        parse_key(public_key)?;
        if site_label.len() > 256 {
            return Err(CoordinatorError::Invalid(
                "site label longer than 256 bytes".into(),
            ));
        }
        let key_hex = hex::encode(public_key);
        if let Some(p) = self.participants.values().find(|p| p.public_key == key_hex) {
            if p.revoked {
                return Err(CoordinatorError::Revoked(p.id.clone()));
            }
            return Ok(p.id.clone());
        }
        let id = format!("p{:06}", self.participants.len() + 1);
        let record = ParticipantRecord {
            id: id.clone(),
            public_key: key_hex,
            site_label: site_label.to_string(),
            enrolled_unix_ms: now_ms,
            revoked: false,
            federations: Vec::new(),
        };
        self.store.put_participant(&record)?;
        self.participants.insert(id.clone(), record);
        self.metrics.set_participants(self.participants.len());
        info!(participant = %id, site = site_label, "participant enrolled");
        Ok(id)
    }

    /// Refuses every later call of `participant`.
    pub fn revoke(&mut self, participant: &str) -> Result<(), CoordinatorError> {
        let p = self
            .participants
            .get_mut(participant)
            .ok_or_else(|| CoordinatorError::UnknownParticipant(participant.to_string()))?;
        p.revoked = true;
        self.store.put_participant(p)?;
        warn!(participant, "participant revoked");
        Ok(())
    }

    /// Verifies a signed call and returns the caller's participant id.
    pub fn authenticate(
        &mut self,
        method: &str,
        federation: &str,
        round: u64,
        auth: Option<&RequestAuth>,
        payload_digest: [u8; 32],
    ) -> Result<String, CoordinatorError> {
        let result = self.verify(method, federation, round, auth, payload_digest);
        if result.is_err() {
            self.metrics.auth_failure();
        }
        result
    }

    fn verify(
        &mut self,
        method: &str,
        federation: &str,
        round: u64,
        auth: Option<&RequestAuth>,
        payload_digest: [u8; 32],
    ) -> Result<String, CoordinatorError> {
        let auth = auth.ok_or(CoordinatorError::Unauthenticated)?;
        let participant = self
            .participants
            .get(&auth.participant_id)
            .ok_or_else(|| CoordinatorError::UnknownParticipant(auth.participant_id.clone()))?;
        let ctx = SignedContext {
            method,
            participant_id: &auth.participant_id,
            federation,
            round,
            nonce: auth.nonce,
            payload_digest,
        };
        self.nonces.verify(participant, &ctx, &auth.signature)?;
        Ok(participant.id.clone())
    }

    /// Adds `participant` to the federation tagged `tag`.
    pub fn join(
        &mut self,
        participant: &str,
        tag: &str,
    ) -> Result<&FederationSpec, CoordinatorError> {
        let name = self
            .federations
            .values()
            .find(|f| f.spec.tag == tag)
            .map(|f| f.spec.name.clone())
            .ok_or_else(|| CoordinatorError::UnknownTag(tag.to_string()))?;
        let p = self
            .participants
            .get_mut(participant)
            .ok_or_else(|| CoordinatorError::UnknownParticipant(participant.to_string()))?;
        if !p.federations.contains(&name) {
            p.federations.push(name.clone());
            self.store.put_participant(p)?;
            info!(participant, federation = %name, "participant joined");
        }
        let federation = self
            .federations
            .get_mut(&name)
            .ok_or(CoordinatorError::UnknownFederation(name))?;
        federation.members.insert(participant.to_string());
        Ok(&federation.spec)
    }

    fn member(
        &mut self,
        participant: &str,
        federation: &str,
    ) -> Result<&mut Federation, CoordinatorError> {
        let f = self
            .federations
            .get_mut(federation)
            .ok_or_else(|| CoordinatorError::UnknownFederation(federation.to_string()))?;
        if !f.members.contains(participant) {
            return Err(CoordinatorError::NotMember {
                participant: participant.into(),
                federation: federation.into(),
            });
        }
        Ok(f)
    }

    /// What `participant` should do now in `federation`.
    pub fn task(
        &mut self,
        participant: &str,
        federation: &str,
        now_ms: u64,
    ) -> Result<Task, CoordinatorError> {
        self.member(participant, federation)?
            .last_seen
            .insert(participant.to_string(), now_ms);
        self.advance(now_ms);
        let f = self.member(participant, federation)?;
        Ok(match &mut f.round {
            RoundState::Done => Task::Done {
                final_weights: WeightsRef {
                    version: f.latest.version,
                    length: f.latest.length,
                    sha256: hex::decode(&f.latest.sha256)
                        .ok()
                        .and_then(|d| d.try_into().ok())
                        .ok_or_else(|| {
                            CoordinatorError::Store(format!(
                                "version {} of `{federation}` has a malformed digest",
                                f.latest.version
                            ))
                        })?,
                },
            },
            RoundState::Idle { .. } => Task::Idle {
                reason: "waiting for enough available participants",
            },
            RoundState::Plain(c) => {
                if c.admit(c.plan().round, participant).is_ok() {
                    Task::Train {
                        plan: Box::new(c.plan().clone()),
                        secagg_plan: None,
                    }
                } else {
                    Task::Idle {
                        reason: "waiting for the round to close",
                    }
                }
            }
            RoundState::Masked(m) => m.task_for(participant),
            RoundState::Encrypted(e) => e.task_for(participant),
        })
    }

    /// Checks an upload header: right federation, round and phase, a selected participant that
    /// has not uploaded yet. Returns the exact byte length expected.
    pub fn admit_upload(
        &mut self,
        participant: &str,
        federation: &str,
        round: u64,
        kind: UploadKind,
    ) -> Result<UploadSlot, CoordinatorError> {
        let f = self.member(participant, federation)?;
        match &f.round {
            RoundState::Plain(c) if kind == UploadKind::Plain => {
                c.admit(round, participant)?;
                Ok(UploadSlot {
                    expected_bytes: Some(c.plan().vector_len() * 4),
                    deadline_unix_ms: c.plan().deadlines.upload_unix_ms,
                })
            }
            RoundState::Masked(m) if kind == UploadKind::Masked => Ok(UploadSlot {
                expected_bytes: m.admit_upload(round, participant)?,
                deadline_unix_ms: m.plan().deadlines.upload_unix_ms,
            }),
            RoundState::Encrypted(e)
                if matches!(kind, UploadKind::Ciphertext | UploadKind::PartialDecryption) =>
            {
                Ok(UploadSlot {
                    expected_bytes: e.admit_upload(
                        round,
                        participant,
                        kind == UploadKind::PartialDecryption,
                    )?,
                    deadline_unix_ms: e.plan().deadlines.unmask_unix_ms,
                })
            }
            state => Err(RoundError::WrongPhase {
                round,
                phase: state.name(),
                what: kind.label(),
            }
            .into()),
        }
    }

    /// Accepts a complete, digest-checked upload.
    pub fn accept_upload(
        &mut self,
        participant: &str,
        federation: &str,
        upload: UploadMeta,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let UploadMeta {
            round,
            kind,
            samples,
        } = upload;
        self.metrics.bytes_in(bytes.len());
        let f = self.member(participant, federation)?;
        match &mut f.round {
            RoundState::Plain(c) if kind == UploadKind::Plain => {
                let update = proto::chunk::bytes_to_f32(bytes)?;
                c.accept(round, participant, samples, &update)?;
            }
            RoundState::Masked(m) if kind == UploadKind::Masked => {
                m.accept_masked(round, participant, bytes, now_ms)?
            }
            RoundState::Encrypted(e)
                if matches!(kind, UploadKind::Ciphertext | UploadKind::PartialDecryption) =>
            {
                e.accept_upload(
                    round,
                    participant,
                    kind == UploadKind::PartialDecryption,
                    bytes,
                )?
            }
            state => {
                return Err(RoundError::WrongPhase {
                    round,
                    phase: state.name(),
                    what: "an update",
                }
                .into());
            }
        }
        if kind != UploadKind::PartialDecryption {
            self.metrics.update_received();
        }
        self.advance(now_ms);
        Ok(())
    }

    /// Accepts a secure-aggregation protocol message.
    pub fn submit_protocol(
        &mut self,
        participant: &str,
        federation: &str,
        round: u64,
        phase: round::masked::StepPhase,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        self.metrics.bytes_in(payload.len());
        let f = self.member(participant, federation)?;
        match &mut f.round {
            RoundState::Masked(m) => {
                m.accept_message(round, participant, phase, payload, now_ms)?
            }
            RoundState::Encrypted(e) => e.accept_message(round, participant, phase, payload)?,
            state => {
                return Err(RoundError::WrongPhase {
                    round,
                    phase: state.name(),
                    what: "protocol messages",
                }
                .into());
            }
        }
        self.advance(now_ms);
        Ok(())
    }

    /// Weights of `version` (little-endian f32 bytes) and their reference.
    pub fn weights(
        &self,
        participant: &str,
        federation: &str,
        version: u64,
    ) -> Result<(WeightsRef, Arc<Vec<u8>>), CoordinatorError> {
        let f = self
            .federations
            .get(federation)
            .ok_or_else(|| CoordinatorError::UnknownFederation(federation.to_string()))?;
        if !f.members.contains(participant) {
            return Err(CoordinatorError::NotMember {
                participant: participant.into(),
                federation: federation.into(),
            });
        }
        let (meta, bytes) = if version == f.latest.version {
            (f.latest.clone(), f.global_bytes.clone())
        } else {
            let meta = self.store.version(federation, version)?.ok_or_else(|| {
                CoordinatorError::UnknownVersion {
                    federation: federation.into(),
                    version,
                }
            })?;
            let bytes = Arc::new(self.artifacts.get(&meta.sha256)?);
            (meta, bytes)
        };
        let sha256 = proto::chunk::sha256(&bytes);
        Ok((
            WeightsRef {
                version: meta.version,
                length: meta.length,
                sha256,
            },
            bytes,
        ))
    }

    /// Encrypted mode: the coordinator-signed aggregate of `round`, for a member of the current
    /// decryption set.
    pub fn aggregate(
        &mut self,
        participant: &str,
        federation: &str,
        round: u64,
    ) -> Result<Arc<Vec<u8>>, CoordinatorError> {
        let f = self.member(participant, federation)?;
        match &f.round {
            RoundState::Encrypted(e) => Ok(e.aggregate_for(round, participant)?),
            state => Err(RoundError::WrongPhase {
                round,
                phase: state.name(),
                what: "aggregate downloads",
            }
            .into()),
        }
    }

    /// Completed versions of a federation, oldest first.
    pub fn versions(&self, federation: &str) -> Result<Vec<ModelVersion>, CoordinatorError> {
        self.store.versions(federation)
    }

    /// The latest version of a federation and its weights.
    pub fn latest(
        &self,
        federation: &str,
    ) -> Result<(ModelVersion, Arc<Vec<f32>>), CoordinatorError> {
        let f = self
            .federations
            .get(federation)
            .ok_or_else(|| CoordinatorError::UnknownFederation(federation.to_string()))?;
        Ok((f.latest.clone(), f.global.clone()))
    }

    /// True when every federation ran all its rounds.
    pub fn all_done(&self) -> bool {
        self.federations
            .values()
            .all(|f| matches!(f.round, RoundState::Done))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Federations added while running (models published to the registry).
impl Hub {
    /// Adds a federation that is not in the config. Its durable record is created as for a
    /// configured one; the caller persists `spec` itself and adds it again after a restart.
    pub fn add_federation(
        &mut self,
        spec: FederationSpec,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        spec.validate()?;
        if let Some(f) = self
            .federations
            .values()
            .find(|f| f.spec.name == spec.name || f.spec.tag == spec.tag)
        {
            return Err(CoordinatorError::Config(format!(
                "federation `{}` (tag `{}`) already exists",
                f.spec.name, f.spec.tag
            )));
        }
        let federation = self.load_federation(&spec, now_ms)?;
        self.federations.insert(spec.name.clone(), federation);
        self.generation += 1;
        Ok(())
    }

    /// True when a federation `name` or one tagged `tag` exists.
    /// What a new federation `name` with `tag` would clash with, if anything.
    pub fn federation_clash(&self, name: &str, tag: &str) -> Option<FederationClash> {
        if self.federations.contains_key(name) {
            return Some(FederationClash::Name);
        }
        self.federations
            .values()
            .find(|f| f.spec.tag == tag)
            .map(|f| FederationClash::Tag(f.spec.name.clone()))
    }
}
