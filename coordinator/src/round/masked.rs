//! Masked rounds: the crypto crate's secure-aggregation coordinator driven through its phases
//! (advertise keys -> share keys -> masked input -> unmask), with per-phase deadlines.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use crypto::FixedPointCodec;
use crypto::secagg::{
    CollectingAdvertisements, CollectingMaskedInputs, CollectingShares, CollectingUnmaskResponses,
    FederationId, ParticipantId, Party, RosterEntry, RoundId, SecAggParams, SignedMessage,
};

use super::Task;
use super::{Aggregated, RoundError, RoundPlan};
use crate::CoordinatorError;

/// What a participant is asked to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepPhase {
    AdvertiseKeys,
    ShareKeys,
    MaskedInput,
    Unmask,
    /// Encrypted mode (see `round::encrypted`).
    HeCommit,
    HeReveal,
    HeDeal,
    HeInput,
    HeDecrypt,
}

/// The coordinator's long-term Ed25519 identity, signing its protocol messages.
#[derive(Debug)]
pub struct CoordinatorIdentity {
    key: ed25519_dalek::SigningKey,
}

impl CoordinatorIdentity {
    /// Loads `<dir>/coordinator.key` (32 raw bytes), creating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, CoordinatorError> {
        let path = dir.join("coordinator.key");
        let io = |source| CoordinatorError::Artifact {
            path: path.clone(),
            source,
        };
        let secret: [u8; 32] = match std::fs::read(&path) {
            Ok(bytes) => bytes.as_slice().try_into().map_err(|_| {
                CoordinatorError::Config(format!("{} must hold 32 bytes", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|e| CoordinatorError::Config(format!("OS RNG: {e}")))?;
                let tmp = dir.join(".coordinator.key.tmp");
                std::fs::write(&tmp, secret).map_err(io)?;
                restrict_to_owner(&tmp).map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                secret
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
        })
    }

    pub fn verifying_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signing key (the model registry signs version manifests with it).
    pub fn signing_key(&self) -> ed25519_dalek::SigningKey {
        self.key.clone()
    }
}

/// The key file is readable by its owner only (0600).
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let _ = path;
    Ok(())
}

/// Result of advancing a masked round.
pub enum Progress {
    Running(Box<MaskedRound>),
    Finished(Box<Finished>),
}

/// A masked round that ended, with or without a result.
pub struct Finished {
    pub plan: RoundPlan,
    pub result: Result<Aggregated, RoundError>,
    /// Phase timings not yet taken (the last phase's).
    pub timings: Vec<(&'static str, u64)>,
    /// Milliseconds spent computing the final unmasking after the phase closed.
    pub compute_ms: u64,
}

/// The crypto coordinator state of the current phase.
enum Phase {
    Advertise(CollectingAdvertisements),
    Shares(CollectingShares),
    Inputs(CollectingMaskedInputs),
    Unmask(CollectingUnmaskResponses),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Advertise(_) => "advertise_keys",
            Phase::Shares(_) => "share_keys",
            Phase::Inputs(_) => "masked_input",
            Phase::Unmask(_) => "unmask",
        }
    }
}

fn secagg_error(e: crypto::CryptoError) -> RoundError {
    RoundError::SecAgg(e.to_string())
}

/// The secure-aggregation number of a participant id (`p000042` -> 42).
pub fn secagg_id(participant: &str) -> Option<u32> {
    participant.strip_prefix('p')?.parse().ok()
}

/// A masked round in flight: the crypto state of the current phase, the message waiting for
/// each participant, and who answered.
pub struct MaskedRound {
    plan: RoundPlan,
    ids: BTreeMap<String, ParticipantId>,
    names: HashMap<ParticipantId, String>,
    codec: FixedPointCodec,
    secagg_plan: Arc<Vec<u8>>,
    phase: Option<Phase>,
    /// Coordinator message of the current phase per recipient.
    outbox: HashMap<String, Arc<Vec<u8>>>,
    answered: BTreeSet<String>,
    phase_deadline_ms: u64,
    phase_started_ms: u64,
    /// (phase, milliseconds) of each closed phase, drained by the hub for metrics.
    timings: Vec<(&'static str, u64)>,
}

impl std::fmt::Debug for MaskedRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskedRound")
            .field("round", &self.plan.round)
            .field("phase", &self.phase_name())
            .field("answered", &self.answered.len())
            .finish_non_exhaustive()
    }
}

/// Secure-aggregation parameters for a roster: the configured neighbours and threshold, or the
/// crypto crate's suggestion, never allowing fewer survivors than the federation's minimum.
fn params_for(plan: &RoundPlan, vector_len: u32) -> Result<SecAggParams, RoundError> {
    let n = plan.selected.len();
    let spec = &plan.spec;
    let mut params = if spec.neighbours > 0 {
        SecAggParams {
            vector_len,
            neighbours: spec.neighbours,
            threshold: spec.threshold.max(spec.neighbours / 2 + 1),
            min_survivors: 0,
        }
    } else if n >= 4 {
        SecAggParams::suggested(n, vector_len).map_err(secagg_error)?
    } else {
        let k = (n as u32).saturating_sub(1);
        SecAggParams {
            vector_len,
            neighbours: k,
            threshold: k,
            min_survivors: 0,
        }
    };
    params.min_survivors = params
        .min_survivors
        .max(params.threshold + 1)
        .max(plan.min_participants as u32);
    params.validate(n).map_err(secagg_error)?;
    Ok(params)
}

impl MaskedRound {
    /// Opens the round: signs the secure-aggregation plan for the selected participants.
    pub fn start(
        plan: RoundPlan,
        keys: &[(String, [u8; 32])],
        identity: &CoordinatorIdentity,
        now_ms: u64,
    ) -> Result<Self, CoordinatorError> {
        let mut ids = BTreeMap::new();
        let mut roster = Vec::with_capacity(keys.len());
        for (name, key) in keys {
            let id = ParticipantId(secagg_id(name).ok_or_else(|| {
                CoordinatorError::Store(format!("participant id `{name}` has no number"))
            })?);
            ids.insert(name.clone(), id);
            roster.push(RosterEntry {
                id,
                verifying_key: *key,
            });
        }
        let vector_len = u32::try_from(plan.vector_len() + 1)
            .map_err(|_| CoordinatorError::Config("model too large for masking".into()))?;
        let params = params_for(&plan, vector_len)?;
        let codec = FixedPointCodec::with_headroom(
            plan.clip(),
            plan.selected.len() as u32,
            plan.max_weight(),
            plan.noise_headroom(),
        )
        .map_err(|e| CoordinatorError::Config(e.to_string()))?;
        let round = RoundId {
            federation: FederationId::from_name(&plan.federation),
            round: plan.round,
        };
        let (state, message) = CollectingAdvertisements::open(
            identity.signing_key(),
            round,
            params,
            roster,
            plan.seed,
        )
        .map_err(|e| RoundError::SecAgg(e.to_string()))?;
        let names = ids.iter().map(|(n, id)| (*id, n.clone())).collect();
        Ok(Self {
            phase_deadline_ms: plan.deadlines.keys_unix_ms,
            plan,
            ids,
            names,
            codec,
            secagg_plan: Arc::new(message.to_bytes()),
            phase: Some(Phase::Advertise(state)),
            outbox: HashMap::new(),
            answered: BTreeSet::new(),
            phase_started_ms: now_ms,
            timings: Vec::new(),
        })
    }

    pub fn plan(&self) -> &RoundPlan {
        &self.plan
    }

    pub fn phase_name(&self) -> &'static str {
        self.phase.as_ref().map_or("closed", Phase::name)
    }

    /// Phase timings recorded since the last call.
    pub fn take_timings(&mut self) -> Vec<(&'static str, u64)> {
        std::mem::take(&mut self.timings)
    }

    /// What `participant` should do in the current phase.
    pub fn task_for(&self, participant: &str) -> Task {
        let waiting = Task::Idle {
            reason: "waiting for the other participants",
        };
        if !self.plan.is_selected(participant) {
            return Task::Idle {
                reason: "not selected for this round",
            };
        }
        if self.answered.contains(participant) {
            return waiting;
        }
        let step = |phase| match self.outbox.get(participant) {
            Some(payload) => Task::Step {
                round: self.plan.round,
                phase,
                payload: payload.clone(),
            },
            // Dropped by the protocol in an earlier phase.
            None => Task::Idle {
                reason: "dropped from this round",
            },
        };
        match &self.phase {
            Some(Phase::Advertise(_)) => Task::Train {
                plan: Box::new(self.plan.clone()),
                secagg_plan: Some(self.secagg_plan.clone()),
            },
            Some(Phase::Shares(_)) => step(StepPhase::ShareKeys),
            Some(Phase::Inputs(_)) => step(StepPhase::MaskedInput),
            Some(Phase::Unmask(_)) => step(StepPhase::Unmask),
            None => waiting,
        }
    }

    fn admit(
        &self,
        round: u64,
        participant: &str,
        phase: StepPhase,
    ) -> Result<ParticipantId, RoundError> {
        self.plan.check(round, participant)?;
        let current = match &self.phase {
            Some(Phase::Advertise(_)) => StepPhase::AdvertiseKeys,
            Some(Phase::Shares(_)) => StepPhase::ShareKeys,
            Some(Phase::Inputs(_)) => StepPhase::MaskedInput,
            Some(Phase::Unmask(_)) => StepPhase::Unmask,
            None => {
                return Err(RoundError::WrongPhase {
                    round,
                    phase: "closed",
                    what: "messages",
                });
            }
        };
        if current != phase {
            return Err(RoundError::WrongPhase {
                round,
                phase: self.phase_name(),
                what: phase_label(phase),
            });
        }
        if self.answered.contains(participant) {
            return Err(RoundError::AlreadySubmitted(participant.to_string()));
        }
        self.ids
            .get(participant)
            .copied()
            .ok_or_else(|| RoundError::NotSelected(participant.to_string()))
    }

    /// Checks an upload header; masked inputs have no exact length known before decoding.
    pub fn admit_upload(&self, round: u64, participant: &str) -> Result<Option<u64>, RoundError> {
        self.admit(round, participant, StepPhase::MaskedInput)?;
        Ok(None)
    }

    /// Takes a masked input (a signed crypto message) and adds it to the running sum.
    pub fn accept_masked(
        &mut self,
        round: u64,
        participant: &str,
        bytes: &[u8],
        _now_ms: u64,
    ) -> Result<(), RoundError> {
        self.accept(
            round,
            participant,
            StepPhase::MaskedInput,
            bytes,
            proto::MAX_VECTOR_BYTES as usize,
        )
    }

    /// Takes a key advertisement, share list or unmask response.
    pub fn accept_message(
        &mut self,
        round: u64,
        participant: &str,
        phase: StepPhase,
        payload: &[u8],
        _now_ms: u64,
    ) -> Result<(), RoundError> {
        self.accept(round, participant, phase, payload, proto::MAX_MESSAGE_BYTES)
    }

    fn accept(
        &mut self,
        round: u64,
        participant: &str,
        phase: StepPhase,
        bytes: &[u8],
        limit: usize,
    ) -> Result<(), RoundError> {
        let id = self.admit(round, participant, phase)?;
        let malformed = |e: crypto::CryptoError| RoundError::Malformed {
            participant: participant.to_string(),
            reason: e.to_string(),
        };
        let message = SignedMessage::from_bytes(bytes, limit).map_err(malformed)?;
        if message.header().sender != Party::Participant(id) {
            return Err(RoundError::Malformed {
                participant: participant.to_string(),
                reason: "message signed for another sender".into(),
            });
        }
        match self.phase.as_mut() {
            Some(Phase::Advertise(s)) => s.receive(&message),
            Some(Phase::Shares(s)) => s.receive(&message),
            Some(Phase::Inputs(s)) => s.receive(&message),
            Some(Phase::Unmask(s)) => s.receive(&message),
            None => {
                return Err(RoundError::WrongPhase {
                    round,
                    phase: "closed",
                    what: "messages",
                });
            }
        }
        .map_err(malformed)?;
        self.answered.insert(participant.to_string());
        Ok(())
    }

    /// Everyone who can still answer in this phase has answered.
    fn phase_complete(&self) -> bool {
        let expected = match &self.phase {
            Some(Phase::Advertise(_)) => self.plan.selected.len(),
            Some(_) => self.outbox.len(),
            None => 0,
        };
        self.answered.len() >= expected
    }

    /// Closes the current phase when complete or past its deadline.
    pub fn advance(mut self: Box<Self>, now_ms: u64) -> Progress {
        if !(self.phase_complete() || now_ms >= self.phase_deadline_ms) {
            return Progress::Running(self);
        }
        let Some(phase) = self.phase.take() else {
            return self.finished(Err(RoundError::SecAgg("round already closed".into())), 0);
        };
        let name = phase.name();
        self.timings
            .push((name, now_ms.saturating_sub(self.phase_started_ms)));
        self.phase_started_ms = now_ms;
        self.answered.clear();
        let spec = &self.plan.spec;
        let outcome = match phase {
            Phase::Advertise(s) => s
                .close()
                .map(|(next, out)| (Phase::Shares(next), out, now_ms + spec.keys_timeout_ms)),
            Phase::Shares(s) => s.close().map(|(next, out)| {
                (
                    Phase::Inputs(next),
                    out,
                    self.plan.deadlines.upload_unix_ms.max(now_ms),
                )
            }),
            Phase::Inputs(s) => s
                .close()
                .map(|(next, out)| (Phase::Unmask(next), out, now_ms + spec.unmask_timeout_ms)),
            Phase::Unmask(s) => {
                let started = std::time::Instant::now();
                let result = s.finish().map_err(secagg_error).and_then(|aggregate| {
                    let n = aggregate.contributors.len() as u32;
                    let mean = self
                        .codec
                        .decode_weighted_mean(&aggregate.sum, n)
                        .map_err(secagg_error)?;
                    Ok(Aggregated {
                        plan: self.plan.clone(),
                        mean_update: mean.mean,
                        total_weight: mean.total_weight,
                        participants: n as usize,
                    })
                });
                let compute_ms = started.elapsed().as_millis() as u64;
                if let Some(last) = self.timings.last_mut() {
                    last.1 += compute_ms;
                }
                return self.finished(result, compute_ms);
            }
        };
        match outcome {
            Ok((next, messages, deadline)) => {
                self.outbox = messages
                    .into_iter()
                    .filter_map(|m| match m.header().recipient {
                        Party::Participant(id) => {
                            Some((self.names.get(&id)?.clone(), Arc::new(m.to_bytes())))
                        }
                        _ => None,
                    })
                    .collect();
                self.phase = Some(next);
                self.phase_deadline_ms = deadline;
                Progress::Running(self)
            }
            Err(e) => self.finished(Err(secagg_error(e)), 0),
        }
    }

    fn finished(
        mut self: Box<Self>,
        result: Result<Aggregated, RoundError>,
        compute_ms: u64,
    ) -> Progress {
        Progress::Finished(Box::new(Finished {
            plan: self.plan.clone(),
            result,
            timings: std::mem::take(&mut self.timings),
            compute_ms,
        }))
    }
}

fn phase_label(phase: StepPhase) -> &'static str {
    match phase {
        StepPhase::AdvertiseKeys => "key advertisements",
        StepPhase::ShareKeys => "key shares",
        StepPhase::MaskedInput => "masked inputs",
        StepPhase::Unmask => "unmask responses",
        _ => "encrypted-mode messages",
    }
}
