//! Masked rounds: the crypto crate's secure-aggregation coordinator driven through its phases
//! (advertise keys -> share keys -> masked input -> unmask), with per-phase deadlines, for one
//! group of every selected site or one group per feeder side by side (see [`super::feeders`]);
//! the groups' unmasked sums are added.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crypto::FixedPointCodec;
use crypto::secagg::{
    CollectingAdvertisements, CollectingMaskedInputs, CollectingShares, CollectingUnmaskResponses,
    FederationId, ParticipantId, Party, RosterEntry, RoundId, SignedMessage,
};

use super::Task;
use super::feeders::{params_for, partition};
use super::{Aggregated, RoundError, RoundPlan};
use crate::CoordinatorError;
pub use crate::identity::CoordinatorIdentity;

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

pub(super) fn secagg_error(e: crypto::CryptoError) -> RoundError {
    RoundError::SecAgg(e.to_string())
}

/// The secure-aggregation number of a participant id (`p000042` -> 42).
pub fn secagg_id(participant: &str) -> Option<u32> {
    participant.strip_prefix('p')?.parse().ok()
}

/// One SecAgg+ group: every selected site (flat rounds) or the selected sites of one feeder
/// (`[federation.hierarchy]`). Groups run side by side through the same phases; each unmasks
/// only its own sum.
struct Group {
    feeder: String,
    phase: Option<Phase>,
    secagg_plan: Arc<Vec<u8>>,
    /// Why the group stopped contributing, if it did.
    failure: Option<String>,
}

/// A masked round in flight: the crypto state of the current phase per group, the message
/// waiting for each participant, and who answered.
pub struct MaskedRound {
    plan: RoundPlan,
    ids: BTreeMap<String, ParticipantId>,
    names: HashMap<ParticipantId, String>,
    codec: FixedPointCodec,
    groups: Vec<Group>,
    /// The group of each selected site that is in one (a site on a feeder with too few
    /// selected sites sits the round out).
    group_of: HashMap<String, usize>,
    /// The phase every live group is in; `None` once closed.
    stage: Option<StepPhase>,
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
            .field("groups", &self.groups.len())
            .field("answered", &self.answered.len())
            .finish_non_exhaustive()
    }
}

fn stage_name(stage: StepPhase) -> &'static str {
    match stage {
        StepPhase::AdvertiseKeys => "advertise_keys",
        StepPhase::ShareKeys => "share_keys",
        StepPhase::MaskedInput => "masked_input",
        _ => "unmask",
    }
}

impl MaskedRound {
    /// Opens the round: signs the secure-aggregation plan of each group. `feeders` names the
    /// feeder of each selected site (used when the federation has a hierarchy).
    pub fn start(
        plan: RoundPlan,
        keys: &[(String, [u8; 32])],
        feeders: &HashMap<String, String>,
        identity: &CoordinatorIdentity,
        now_ms: u64,
    ) -> Result<Self, CoordinatorError> {
        let mut ids = BTreeMap::new();
        for (name, _) in keys {
            let id = ParticipantId(secagg_id(name).ok_or_else(|| {
                CoordinatorError::Store(format!("participant id `{name}` has no number"))
            })?);
            ids.insert(name.clone(), id);
        }
        let vector_len = u32::try_from(plan.vector_len() + 1)
            .map_err(|_| CoordinatorError::Config("model too large for masking".into()))?;
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
        let floor = match &plan.spec.hierarchy {
            Some(h) => h.min_sites_per_feeder,
            None => plan.min_participants as u32,
        };
        let mut groups = Vec::new();
        let mut group_of = HashMap::new();
        for (index, (feeder, sites)) in partition(&plan, keys, feeders).into_iter().enumerate() {
            let params = params_for(&plan, sites.len(), floor, vector_len)?;
            let roster = sites
                .iter()
                .filter_map(|(name, key)| {
                    Some(RosterEntry {
                        id: *ids.get(name)?,
                        verifying_key: *key,
                    })
                })
                .collect();
            // Each group draws its own neighbour graph.
            let mut seed = plan.seed;
            seed[..8]
                .iter_mut()
                .zip(index.to_le_bytes())
                .for_each(|(s, i)| *s ^= i);
            let (state, message) =
                CollectingAdvertisements::open(identity.signing_key(), round, params, roster, seed)
                    .map_err(|e| RoundError::SecAgg(e.to_string()))?;
            for (name, _) in &sites {
                group_of.insert(name.clone(), groups.len());
            }
            groups.push(Group {
                feeder,
                phase: Some(Phase::Advertise(state)),
                secagg_plan: Arc::new(message.to_bytes()),
                failure: None,
            });
        }
        if groups.is_empty() {
            return Err(RoundError::SecAgg(
                "no feeder has min_sites_per_feeder selected sites".into(),
            )
            .into());
        }
        let names = ids.iter().map(|(n, id)| (*id, n.clone())).collect();
        Ok(Self {
            phase_deadline_ms: plan.deadlines.keys_unix_ms,
            plan,
            ids,
            names,
            codec,
            groups,
            group_of,
            stage: Some(StepPhase::AdvertiseKeys),
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
        self.stage.map_or("closed", stage_name)
    }

    /// Phase timings recorded since the last call.
    pub fn take_timings(&mut self) -> Vec<(&'static str, u64)> {
        std::mem::take(&mut self.timings)
    }

    /// The live group of `participant`, if it is in one.
    fn group(&self, participant: &str) -> Option<&Group> {
        let group = &self.groups[*self.group_of.get(participant)?];
        group.failure.is_none().then_some(group)
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
        if !self.group_of.contains_key(participant) {
            return Task::Idle {
                reason: "too few sites of this feeder in the round",
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
        match self.stage {
            Some(StepPhase::AdvertiseKeys) => match self.group(participant) {
                Some(group) => Task::Train {
                    plan: Box::new(self.plan.clone()),
                    secagg_plan: Some(group.secagg_plan.clone()),
                },
                None => Task::Idle {
                    reason: "dropped from this round",
                },
            },
            Some(phase) => step(phase),
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
        let Some(current) = self.stage else {
            return Err(RoundError::WrongPhase {
                round,
                phase: "closed",
                what: "messages",
            });
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
        if !self.group_of.contains_key(participant) {
            return Err(RoundError::NotSelected(participant.to_string()));
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

    /// Takes a masked input (a signed crypto message) and adds it to its group's running sum.
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
        let closed = RoundError::WrongPhase {
            round,
            phase: "closed",
            what: "messages",
        };
        let Some(&index) = self.group_of.get(participant) else {
            return Err(RoundError::NotSelected(participant.to_string()));
        };
        match self.groups[index].phase.as_mut() {
            Some(Phase::Advertise(s)) => s.receive(&message),
            Some(Phase::Shares(s)) => s.receive(&message),
            Some(Phase::Inputs(s)) => s.receive(&message),
            Some(Phase::Unmask(s)) => s.receive(&message),
            // Its group failed in an earlier phase.
            None => return Err(closed),
        }
        .map_err(malformed)?;
        self.answered.insert(participant.to_string());
        Ok(())
    }

    /// Everyone who can still answer in this phase has answered.
    fn phase_complete(&self) -> bool {
        let expected = match self.stage {
            Some(StepPhase::AdvertiseKeys) => self
                .group_of
                .keys()
                .filter(|p| self.group(p).is_some())
                .count(),
            Some(_) => self.outbox.len(),
            None => 0,
        };
        self.answered.len() >= expected
    }

    /// The fewest contributing groups a round needs.
    fn min_groups(&self) -> usize {
        self.plan
            .spec
            .hierarchy
            .as_ref()
            .map_or(1, |h| h.min_feeders as usize)
    }

    /// Why the round cannot finish: the flat group's own error, or the feeders that failed.
    fn groups_failed(&self, live: usize) -> RoundError {
        if self.plan.spec.hierarchy.is_none() {
            let why = self.groups.iter().find_map(|g| g.failure.clone());
            return RoundError::SecAgg(why.unwrap_or_else(|| "secure aggregation failed".into()));
        }
        let failures: Vec<String> = self
            .groups
            .iter()
            .filter_map(|g| Some(format!("feeder `{}`: {}", g.feeder, g.failure.as_ref()?)))
            .collect();
        RoundError::SecAgg(format!(
            "{live} feeders can contribute, the round needs {} ({})",
            self.min_groups(),
            failures.join("; ")
        ))
    }

    /// Closes the current phase when complete or past its deadline.
    pub fn advance(mut self: Box<Self>, now_ms: u64) -> Progress {
        if !(self.phase_complete() || now_ms >= self.phase_deadline_ms) {
            return Progress::Running(self);
        }
        let Some(stage) = self.stage.take() else {
            return self.finished(Err(RoundError::SecAgg("round already closed".into())), 0);
        };
        self.timings.push((
            stage_name(stage),
            now_ms.saturating_sub(self.phase_started_ms),
        ));
        self.phase_started_ms = now_ms;
        self.answered.clear();
        if stage == StepPhase::Unmask {
            return self.unmask();
        }
        let spec = &self.plan.spec;
        let (next, deadline) = match stage {
            StepPhase::AdvertiseKeys => (StepPhase::ShareKeys, now_ms + spec.keys_timeout_ms),
            StepPhase::ShareKeys => (
                StepPhase::MaskedInput,
                self.plan.deadlines.upload_unix_ms.max(now_ms),
            ),
            _ => (StepPhase::Unmask, now_ms + spec.unmask_timeout_ms),
        };
        let mut outbox = HashMap::new();
        for group in &mut self.groups {
            let Some(phase) = group.phase.take() else {
                continue;
            };
            let closed = match phase {
                Phase::Advertise(s) => s.close().map(|(n, out)| (Phase::Shares(n), out)),
                Phase::Shares(s) => s.close().map(|(n, out)| (Phase::Inputs(n), out)),
                Phase::Inputs(s) => s.close().map(|(n, out)| (Phase::Unmask(n), out)),
                // Unmasking is finished by `unmask`, never closed here.
                unmasking @ Phase::Unmask(_) => {
                    group.phase = Some(unmasking);
                    continue;
                }
            };
            match closed {
                Ok((phase, messages)) => {
                    for m in messages {
                        if let Party::Participant(id) = m.header().recipient
                            && let Some(name) = self.names.get(&id)
                        {
                            outbox.insert(name.clone(), Arc::new(m.to_bytes()));
                        }
                    }
                    group.phase = Some(phase);
                }
                Err(e) => {
                    tracing::warn!(federation = %self.plan.federation, round = self.plan.round,
                        feeder = %group.feeder, error = %e, "secure-aggregation group failed");
                    group.failure = Some(e.to_string());
                }
            }
        }
        let live = self.groups.iter().filter(|g| g.failure.is_none()).count();
        if live < self.min_groups() {
            let error = self.groups_failed(live);
            return self.finished(Err(error), 0);
        }
        self.outbox = outbox;
        self.stage = Some(next);
        self.phase_deadline_ms = deadline;
        Progress::Running(self)
    }

    /// Unmasks every live group's sum, adds those over their floor and decodes the mean.
    fn unmask(mut self: Box<Self>) -> Progress {
        let started = std::time::Instant::now();
        let mut sums = Vec::new();
        let mut contributors = 0usize;
        for group in &mut self.groups {
            let Some(Phase::Unmask(s)) = group.phase.take() else {
                continue;
            };
            match s.finish() {
                Ok(aggregate) => {
                    contributors += aggregate.contributors.len();
                    sums.push(aggregate.sum);
                }
                Err(e) => {
                    tracing::warn!(federation = %self.plan.federation, round = self.plan.round,
                        feeder = %group.feeder, error = %e, "secure-aggregation group failed");
                    group.failure = Some(e.to_string());
                }
            }
        }
        let result = if sums.len() < self.min_groups() {
            Err(self.groups_failed(sums.len()))
        } else {
            let parts: Vec<&[u32]> = sums.iter().map(Vec::as_slice).collect();
            let sum = crypto::secagg::simulation::plain_sum(&parts);
            let n = contributors as u32;
            self.codec
                .decode_weighted_mean(&sum, n)
                .map_err(secagg_error)
                .map(|mean| Aggregated {
                    plan: self.plan.clone(),
                    mean_update: mean.mean,
                    total_weight: mean.total_weight,
                    participants: contributors,
                })
        };
        let compute_ms = started.elapsed().as_millis() as u64;
        if let Some(last) = self.timings.last_mut() {
            last.1 += compute_ms;
        }
        self.finished(result, compute_ms)
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
