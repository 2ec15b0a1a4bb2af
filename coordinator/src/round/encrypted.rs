//! Encrypted rounds: threshold RLWE (`crypto::he`) driven through its phases.
//!
//! `he_commit -> he_reveal -> he_deal` (the committee generates the collective key) `->
//! he_input` (everyone uploads a ciphertext, added on arrival) `-> he_decrypt` (`t` members
//! partially decrypt the aggregate) `->` FedAvg. The coordinator relays sealed fragments it
//! cannot open and holds only public material (`EncryptedAggregator`, checked by the type
//! system). Protocol and threat model: docs/federation.md, "Encrypted rounds".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crypto::he::{
    AggregationPlan, Ciphertext, CollectivePublicKey, Committee, CommitteeSeat, CommitteeSize,
    DecryptorSet, EncryptedAggregator, HeError, LimbCodec, MemberIndex, PartialDecryption,
    PublicKeyShare, ShareCommitments, SlotCount, SummandCount, Threshold, VerifyingKey,
    sealed_fragment_len, verify_exchange_key,
};
use crypto::secagg::{FederationId, ParticipantId};
use prost::Message;
use proto::v1 as pb;

use super::Task;
use super::masked::{CoordinatorIdentity, Finished, StepPhase, secagg_id};
use super::{Aggregated, RoundError, RoundPlan};
use crate::CoordinatorError;

/// Largest committee: each member receives one 128 KiB fragment per member in one message,
/// which must stay under `proto::MAX_MESSAGE_BYTES`.
pub const MAX_COMMITTEE_MEMBERS: usize = 16;
/// Decryption requests per round: the first set, and one more without the members that did
/// not answer. Members' decryption budgets (and so the smudging noise) are sized for this.
pub const DECRYPT_ATTEMPTS: u32 = 2;

/// Result of advancing an encrypted round.
pub enum Progress {
    Running(Box<EncryptedRound>),
    Finished(Box<Finished>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Commit,
    Reveal,
    Deal,
    Input,
    Decrypt { attempt: u32 },
    Closed,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Commit => "he_commit",
            Stage::Reveal => "he_reveal",
            Stage::Deal => "he_deal",
            Stage::Input => "he_input",
            Stage::Decrypt { .. } => "he_decrypt",
            Stage::Closed => "closed",
        }
    }

    fn step(self) -> Option<StepPhase> {
        Some(match self {
            Stage::Commit => StepPhase::HeCommit,
            Stage::Reveal => StepPhase::HeReveal,
            Stage::Deal => StepPhase::HeDeal,
            Stage::Input => StepPhase::HeInput,
            Stage::Decrypt { .. } => StepPhase::HeDecrypt,
            Stage::Closed => return None,
        })
    }
}

fn he_error(e: HeError) -> RoundError {
    RoundError::SecAgg(format!("encrypted aggregation: {e}"))
}

/// The plan and codec for `contributors` summands of `values` parameters: the widest plaintext
/// whose noise budget covers [`DECRYPT_ATTEMPTS`] decryptions of the limb-split vector.
pub fn plan_for(
    contributors: usize,
    committee: usize,
    threshold: usize,
    values: usize,
    clip: f32,
    max_weight: u32,
    noise_headroom: u32,
) -> Result<(AggregationPlan, LimbCodec), HeError> {
    let summands = u32::try_from(contributors).map_err(|_| HeError::InvalidPlan("roster"))?;
    let size = |n: usize| u16::try_from(n).map_err(|_| HeError::InvalidPlan("committee"));
    // The limb count depends on the plaintext bits, which depend on the budget: try the
    // smallest limb count first.
    for limbs in 2..=8u64 {
        let budget = u64::from(DECRYPT_ATTEMPTS) * (values as u64 + 1) * limbs;
        let plan = AggregationPlan::widest(
            SummandCount(summands),
            CommitteeSize(size(committee)?),
            Threshold(size(threshold)?),
            SlotCount(budget),
        )?;
        let codec = LimbCodec::with_headroom(&plan, clip, max_weight, noise_headroom)?;
        if codec.slots(values) as u64 <= (values as u64 + 1) * limbs {
            return Ok((plan, codec));
        }
    }
    Err(HeError::InvalidPlan("no plaintext width fits this roster"))
}

/// An encrypted round in flight.
pub struct EncryptedRound {
    plan: RoundPlan,
    committee: Committee,
    committee_bytes: Arc<Vec<u8>>,
    /// Member `i + 1`'s participant name.
    members: Vec<String>,
    /// Every selected participant's secagg id and identity key.
    identities: BTreeMap<String, (ParticipantId, VerifyingKey)>,
    codec: LimbCodec,
    slots: usize,
    stage: Stage,
    commitments: Vec<Option<Vec<u8>>>,
    exchange_keys: Vec<Option<Vec<u8>>>,
    share_commitments: Option<ShareCommitments>,
    shares: Vec<Option<(Vec<u8>, PublicKeyShare)>>,
    key: Option<CollectivePublicKey>,
    /// Sealed fragments by recipient, then dealer (member positions).
    fragments: Vec<Vec<Option<pb::HeSealedFragment>>>,
    aggregator: Option<EncryptedAggregator>,
    aggregate: Option<Ciphertext>,
    sealed_aggregate: Option<Arc<Vec<u8>>>,
    decryptors: Vec<u16>,
    partials: Vec<PartialDecryption>,
    /// Members that missed a decryption request.
    unresponsive: BTreeSet<u16>,
    signer: crypto::he::SigningKey,
    /// Participants handed the round's training task.
    trained: BTreeSet<String>,
    outbox: HashMap<String, Arc<Vec<u8>>>,
    answered: BTreeSet<String>,
    phase_deadline_ms: u64,
    phase_started_ms: u64,
    timings: Vec<(&'static str, u64)>,
}

impl std::fmt::Debug for EncryptedRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedRound")
            .field("round", &self.plan.round)
            .field("phase", &self.phase_name())
            .field("answered", &self.answered.len())
            .finish_non_exhaustive()
    }
}

impl EncryptedRound {
    /// Opens the round: the first (up to [`MAX_COMMITTEE_MEMBERS`]) selected participants form
    /// the committee under a plan sized for every selected participant.
    pub fn start(
        plan: RoundPlan,
        keys: &[(String, [u8; 32])],
        identity: &CoordinatorIdentity,
        now_ms: u64,
    ) -> Result<Self, CoordinatorError> {
        let mut identities = BTreeMap::new();
        for (name, key) in keys {
            let id = ParticipantId(secagg_id(name).ok_or_else(|| {
                CoordinatorError::Store(format!("participant id `{name}` has no number"))
            })?);
            let key = VerifyingKey::from_bytes(key).map_err(|_| {
                CoordinatorError::Store(format!("participant `{name}` has an invalid key"))
            })?;
            identities.insert(name.clone(), (id, key));
        }
        let members: Vec<String> = plan
            .selected
            .iter()
            .filter(|name| identities.contains_key(*name))
            .take(MAX_COMMITTEE_MEMBERS)
            .cloned()
            .collect();
        let m = members.len();
        let t = match plan.spec.threshold as usize {
            0 => m / 2 + 1,
            t => t.min(m),
        };
        let values = usize::try_from(plan.vector_len())
            .map_err(|_| CoordinatorError::Config("model too large".into()))?;
        let (he_plan, codec) = plan_for(
            plan.selected.len(),
            m,
            t,
            values,
            plan.clip(),
            plan.max_weight(),
            plan.noise_headroom(),
        )
        .map_err(he_error)?;
        let seats = members
            .iter()
            .filter_map(|name| identities.get(name))
            .map(|&(participant, verifying_key)| CommitteeSeat {
                participant,
                verifying_key,
            })
            .collect();
        let committee = Committee::new(
            FederationId::from_name(&plan.federation),
            plan.round,
            he_plan,
            seats,
        )
        .map_err(he_error)?;
        Ok(Self {
            committee_bytes: Arc::new(committee.encode()),
            committee,
            identities,
            slots: codec.slots(values),
            codec,
            stage: Stage::Commit,
            commitments: vec![None; m],
            exchange_keys: vec![None; m],
            share_commitments: None,
            shares: vec![None; m],
            key: None,
            fragments: vec![vec![None; m]; m],
            aggregator: None,
            aggregate: None,
            sealed_aggregate: None,
            decryptors: Vec::new(),
            partials: Vec::new(),
            unresponsive: BTreeSet::new(),
            signer: identity.signing_key(),
            trained: BTreeSet::new(),
            outbox: HashMap::new(),
            answered: BTreeSet::new(),
            phase_deadline_ms: plan.deadlines.keys_unix_ms,
            phase_started_ms: now_ms,
            timings: Vec::new(),
            members,
            plan,
        })
    }

    pub fn plan(&self) -> &RoundPlan {
        &self.plan
    }

    pub fn phase_name(&self) -> &'static str {
        self.stage.name()
    }

    /// Phase timings recorded since the last call.
    pub fn take_timings(&mut self) -> Vec<(&'static str, u64)> {
        std::mem::take(&mut self.timings)
    }

    fn member_of(&self, participant: &str) -> Option<u16> {
        let (id, _) = self.identities.get(participant)?;
        self.committee.member_index(*id).map(|m| m.0)
    }

    /// Whom this stage waits for.
    fn expected(&self) -> Vec<&String> {
        match self.stage {
            Stage::Commit | Stage::Reveal | Stage::Deal => self.members.iter().collect(),
            Stage::Input => self.plan.selected.iter().collect(),
            Stage::Decrypt { .. } => self
                .decryptors
                .iter()
                .filter_map(|&m| self.members.get(usize::from(m) - 1))
                .collect(),
            Stage::Closed => Vec::new(),
        }
    }

    /// What `participant` should do now.
    pub fn task_for(&mut self, participant: &str) -> Task {
        if !self.plan.is_selected(participant) {
            return Task::Idle {
                reason: "not selected for this round",
            };
        }
        let waiting = Task::Idle {
            reason: "waiting for the other participants",
        };
        // Everyone trains from the start; members also answer with their commitment.
        if !self.trained.contains(participant) {
            self.trained.insert(participant.to_string());
            return Task::Train {
                plan: Box::new(self.plan.clone()),
                secagg_plan: Some(self.committee_bytes.clone()),
            };
        }
        if self.stage == Stage::Commit && self.member_of(participant).is_some() {
            if self.answered.contains(participant) {
                return waiting;
            }
            // The member has the task already; a repeat lets a restarted daemon rejoin.
            return Task::Train {
                plan: Box::new(self.plan.clone()),
                secagg_plan: Some(self.committee_bytes.clone()),
            };
        }
        if self.answered.contains(participant) || !self.expected().iter().any(|p| *p == participant)
        {
            return waiting;
        }
        match (self.stage.step(), self.outbox.get(participant)) {
            (Some(phase), Some(payload)) => Task::Step {
                round: self.plan.round,
                phase,
                payload: payload.clone(),
            },
            _ => waiting,
        }
    }

    fn admit(&self, round: u64, participant: &str, phase: StepPhase) -> Result<(), RoundError> {
        self.plan.check(round, participant)?;
        if self.stage.step() != Some(phase) {
            return Err(RoundError::WrongPhase {
                round,
                phase: self.phase_name(),
                what: phase_label(phase),
            });
        }
        if !self.expected().iter().any(|p| *p == participant) {
            return Err(RoundError::NotSelected(participant.to_string()));
        }
        if self.answered.contains(participant) {
            return Err(RoundError::AlreadySubmitted(participant.to_string()));
        }
        Ok(())
    }

    /// Checks an upload header: a ciphertext in `he_input`, a partial decryption from a
    /// decryptor in `he_decrypt`. Returns the exact byte length expected.
    pub fn admit_upload(
        &self,
        round: u64,
        participant: &str,
        partial: bool,
    ) -> Result<Option<u64>, RoundError> {
        if partial {
            self.admit(round, participant, StepPhase::HeDecrypt)?;
            let t = usize::from(self.committee.plan().threshold().0);
            Ok(Some(PartialDecryption::frame_len(t, self.slots) as u64))
        } else {
            self.admit(round, participant, StepPhase::HeInput)?;
            Ok(Some(Ciphertext::frame_len(self.slots) as u64))
        }
    }

    /// Takes an HeCommitment, a public key share frame or an HeFragments.
    pub fn accept_message(
        &mut self,
        round: u64,
        participant: &str,
        phase: StepPhase,
        payload: &[u8],
    ) -> Result<(), RoundError> {
        self.admit(round, participant, phase)?;
        let malformed = |reason: String| RoundError::Malformed {
            participant: participant.to_string(),
            reason,
        };
        let member = self
            .member_of(participant)
            .ok_or_else(|| RoundError::NotSelected(participant.to_string()))?;
        let position = usize::from(member) - 1;
        match self.stage {
            Stage::Commit => {
                let message = pb::HeCommitment::decode(payload)
                    .map_err(|e| malformed(format!("HeCommitment: {e}")))?;
                verify_exchange_key(&self.committee, MemberIndex(member), &message.exchange_key)
                    .map_err(|e| malformed(format!("exchange_key: {e}")))?;
                // Collecting one frame verifies its signature and binding; only the other
                // members' commitments may be missing.
                match ShareCommitments::collect(&self.committee, &[&message.commitment]) {
                    Err(HeError::KeyGenerationIncomplete(_)) => {}
                    Ok(_) if self.members.len() == 1 => {}
                    Ok(_) => return Err(malformed("commitment: unexpected".into())),
                    Err(e) => return Err(malformed(format!("commitment: {e}"))),
                }
                self.commitments[position] = Some(message.commitment);
                self.exchange_keys[position] = Some(message.exchange_key);
            }
            Stage::Reveal => {
                let commitments = self
                    .share_commitments
                    .as_ref()
                    .ok_or_else(|| RoundError::SecAgg("commitments missing".into()))?;
                let share = PublicKeyShare::open(payload, &self.committee, commitments)
                    .map_err(|e| malformed(format!("public key share: {e}")))?;
                if share.member().0 != member {
                    return Err(malformed("public key share of another member".into()));
                }
                self.shares[position] = Some((payload.to_vec(), share));
            }
            Stage::Deal => {
                let dealing = pb::HeFragments::decode(payload)
                    .map_err(|e| malformed(format!("HeFragments: {e}")))?;
                let m = self.members.len();
                let sealed_len = sealed_fragment_len();
                let mut seen = vec![false; m];
                for fragment in &dealing.fragments {
                    let recipient = fragment.recipient as usize;
                    if fragment.dealer != u32::from(member) {
                        return Err(malformed("fragments.dealer is not the sender".into()));
                    }
                    if recipient == 0
                        || recipient > m
                        || std::mem::replace(&mut seen[recipient - 1], true)
                    {
                        return Err(malformed(format!(
                            "fragments.recipient {recipient} off the committee or repeated"
                        )));
                    }
                    if fragment.sealed.len() != sealed_len {
                        return Err(malformed(format!(
                            "fragments.sealed is {} bytes, expected {sealed_len}",
                            fragment.sealed.len()
                        )));
                    }
                }
                if seen.iter().any(|s| !s) {
                    return Err(malformed("a fragment for every member is required".into()));
                }
                for fragment in dealing.fragments {
                    let recipient = fragment.recipient as usize - 1;
                    self.fragments[recipient][position] = Some(fragment);
                }
            }
            _ => {
                return Err(RoundError::WrongPhase {
                    round,
                    phase: self.phase_name(),
                    what: phase_label(phase),
                });
            }
        }
        self.answered.insert(participant.to_string());
        Ok(())
    }

    /// Takes a sealed ciphertext (added to the running sum) or a partial decryption.
    pub fn accept_upload(
        &mut self,
        round: u64,
        participant: &str,
        partial: bool,
        bytes: &[u8],
    ) -> Result<(), RoundError> {
        let phase = if partial {
            StepPhase::HeDecrypt
        } else {
            StepPhase::HeInput
        };
        self.admit(round, participant, phase)?;
        let malformed = |what: &str, e: HeError| RoundError::Malformed {
            participant: participant.to_string(),
            reason: format!("{what}: {e}"),
        };
        let &(id, sender) = self
            .identities
            .get(participant)
            .ok_or_else(|| RoundError::NotSelected(participant.to_string()))?;
        if partial {
            let (Some(key), Some(aggregate)) = (&self.key, &self.aggregate) else {
                return Err(RoundError::SecAgg("no aggregate to decrypt".into()));
            };
            let share = PartialDecryption::open(bytes, &self.committee, self.slots)
                .map_err(|e| malformed("partial decryption", e))?;
            if Some(share.member().0) != self.member_of(participant) {
                return Err(RoundError::Malformed {
                    participant: participant.to_string(),
                    reason: "partial decryption signed for another member".into(),
                });
            }
            // Checks the binding to this key and aggregate now; the threshold comes later.
            match crypto::he::combine(key, aggregate, std::slice::from_ref(&share)) {
                Ok(_) | Err(HeError::BelowThreshold { .. }) => {}
                Err(e) => return Err(malformed("partial decryption", e)),
            }
            self.partials.push(share);
        } else {
            let aggregator = self
                .aggregator
                .as_mut()
                .ok_or_else(|| RoundError::SecAgg("no collective key yet".into()))?;
            aggregator
                .add_sealed(id, bytes, &sender)
                .map_err(|e| malformed("ciphertext", e))?;
        }
        self.answered.insert(participant.to_string());
        Ok(())
    }

    /// The coordinator-signed aggregate, for `participant` in the current decryption set.
    pub fn aggregate_for(&self, round: u64, participant: &str) -> Result<Arc<Vec<u8>>, RoundError> {
        self.plan.check(round, participant)?;
        let member = self.member_of(participant);
        match (&self.sealed_aggregate, self.stage) {
            (Some(sealed), Stage::Decrypt { .. })
                if member.is_some_and(|m| self.decryptors.contains(&m)) =>
            {
                Ok(sealed.clone())
            }
            _ => Err(RoundError::WrongPhase {
                round,
                phase: self.phase_name(),
                what: "aggregate downloads from this participant",
            }),
        }
    }

    fn complete(&self) -> bool {
        let expected = self.expected();
        !expected.is_empty() && expected.iter().all(|p| self.answered.contains(*p))
    }

    /// Closes the current stage when complete or past its deadline.
    pub fn advance(mut self: Box<Self>, now_ms: u64) -> Progress {
        if !(self.complete() || now_ms >= self.phase_deadline_ms) {
            return Progress::Running(self);
        }
        let stage = self.stage;
        self.timings
            .push((stage.name(), now_ms.saturating_sub(self.phase_started_ms)));
        self.phase_started_ms = now_ms;
        let started = std::time::Instant::now();
        let next = match stage {
            Stage::Commit | Stage::Reveal | Stage::Deal if !self.complete() => {
                Err(RoundError::TooFew {
                    round: self.plan.round,
                    have: self.answered.len(),
                    need: self.members.len(),
                })
            }
            Stage::Commit => self.close_commit(now_ms),
            Stage::Reveal => self.close_reveal(now_ms),
            Stage::Deal => self.close_deal(now_ms),
            Stage::Input => self.close_input(now_ms),
            Stage::Decrypt { attempt } => self.close_decrypt(attempt, now_ms),
            Stage::Closed => Err(RoundError::SecAgg("round already closed".into())),
        };
        let compute_ms = started.elapsed().as_millis() as u64;
        match next {
            Ok(None) => {
                self.answered.clear();
                Progress::Running(self)
            }
            Ok(Some(aggregated)) => self.finished(Ok(aggregated), compute_ms),
            Err(e) => self.finished(Err(e), compute_ms),
        }
    }

    fn enter(&mut self, stage: Stage, deadline_ms: u64, outbox: HashMap<String, Arc<Vec<u8>>>) {
        self.stage = stage;
        self.phase_deadline_ms = deadline_ms;
        self.outbox = outbox;
    }

    fn broadcast(&self, to: &[String], message: &impl Message) -> HashMap<String, Arc<Vec<u8>>> {
        let payload = Arc::new(message.encode_to_vec());
        to.iter().map(|p| (p.clone(), payload.clone())).collect()
    }

    fn close_commit(&mut self, now_ms: u64) -> Result<Option<Aggregated>, RoundError> {
        let commitments: Vec<Vec<u8>> = self.commitments.iter().flatten().cloned().collect();
        let frames: Vec<&[u8]> = commitments.iter().map(Vec::as_slice).collect();
        self.share_commitments =
            Some(ShareCommitments::collect(&self.committee, &frames).map_err(he_error)?);
        let directory = pb::HeKeyDirectory {
            exchange_keys: self.exchange_keys.iter().flatten().cloned().collect(),
            commitments,
        };
        let outbox = self.broadcast(&self.members, &directory);
        self.enter(
            Stage::Reveal,
            now_ms + self.plan.spec.keys_timeout_ms,
            outbox,
        );
        Ok(None)
    }

    fn share_frames(&self) -> Vec<Vec<u8>> {
        self.shares
            .iter()
            .flatten()
            .map(|(f, _)| f.clone())
            .collect()
    }

    fn close_reveal(&mut self, now_ms: u64) -> Result<Option<Aggregated>, RoundError> {
        let shares: Vec<PublicKeyShare> = self
            .shares
            .iter()
            .flatten()
            .map(|(_, s)| s.clone())
            .collect();
        let key = CollectivePublicKey::combine(&self.committee, &shares).map_err(he_error)?;
        let length = self.slots;
        self.aggregator = Some(EncryptedAggregator::new(&key, length).map_err(he_error)?);
        self.key = Some(key);
        let message = pb::HeKeyShares {
            shares: self.share_frames(),
        };
        let outbox = self.broadcast(&self.members, &message);
        self.enter(Stage::Deal, now_ms + self.plan.spec.keys_timeout_ms, outbox);
        Ok(None)
    }

    fn close_deal(&mut self, now_ms: u64) -> Result<Option<Aggregated>, RoundError> {
        let commitments: Vec<Vec<u8>> = self.commitments.iter().flatten().cloned().collect();
        let shares = self.share_frames();
        let outbox = self
            .plan
            .selected
            .iter()
            .map(|participant| {
                let fragments = self
                    .member_of(participant)
                    .and_then(|m| self.fragments.get(usize::from(m) - 1))
                    .map(|inbox| inbox.iter().flatten().cloned().collect())
                    .unwrap_or_default();
                let step = pb::HeInputStep {
                    commitments: commitments.clone(),
                    shares: shares.clone(),
                    fragments,
                };
                (participant.clone(), Arc::new(step.encode_to_vec()))
            })
            .collect();
        // The fragments are delivered; the coordinator keeps no copy.
        self.fragments = Vec::new();
        let deadline = self.plan.deadlines.upload_unix_ms.max(now_ms);
        self.enter(Stage::Input, deadline, outbox);
        Ok(None)
    }

    fn close_input(&mut self, now_ms: u64) -> Result<Option<Aggregated>, RoundError> {
        let aggregator = self
            .aggregator
            .take()
            .ok_or_else(|| RoundError::SecAgg("no aggregator".into()))?;
        let have = aggregator.contributors().len();
        if have < self.plan.min_participants {
            return Err(RoundError::TooFew {
                round: self.plan.round,
                have,
                need: self.plan.min_participants,
            });
        }
        let uploaded: BTreeSet<String> = self.answered.clone();
        let aggregate = aggregator.finish().map_err(he_error)?;
        self.sealed_aggregate = Some(Arc::new(aggregate.seal(&self.signer)));
        self.aggregate = Some(aggregate);
        // Members that just uploaded are likely alive: ask them first.
        let mut order: Vec<u16> = (1..=self.members.len() as u16).collect();
        order.sort_by_key(|&m| !uploaded.contains(&self.members[usize::from(m) - 1]));
        self.request_decryption(order, 1, now_ms)
    }

    fn request_decryption(
        &mut self,
        candidates: Vec<u16>,
        attempt: u32,
        now_ms: u64,
    ) -> Result<Option<Aggregated>, RoundError> {
        let t = usize::from(self.committee.plan().threshold().0);
        let chosen: Vec<u16> = candidates
            .into_iter()
            .filter(|m| !self.unresponsive.contains(m))
            .take(t)
            .collect();
        let set: Vec<MemberIndex> = chosen.iter().map(|&m| MemberIndex(m)).collect();
        DecryptorSet::new(self.committee.plan(), &set).map_err(he_error)?;
        let mut decryptors = chosen;
        decryptors.sort_unstable();
        let sealed = self
            .sealed_aggregate
            .as_ref()
            .ok_or_else(|| RoundError::SecAgg("no aggregate".into()))?;
        let step = pb::HeDecryptStep {
            decryptors: decryptors.iter().map(|&m| u32::from(m)).collect(),
            aggregate_bytes: sealed.len() as u64,
            aggregate_sha256: proto::chunk::sha256(sealed).to_vec(),
            attempt,
        };
        let to: Vec<String> = decryptors
            .iter()
            .map(|&m| self.members[usize::from(m) - 1].clone())
            .collect();
        let outbox = self.broadcast(&to, &step);
        self.decryptors = decryptors;
        self.partials.clear();
        self.enter(
            Stage::Decrypt { attempt },
            now_ms + self.plan.spec.unmask_timeout_ms,
            outbox,
        );
        Ok(None)
    }

    fn close_decrypt(
        &mut self,
        attempt: u32,
        now_ms: u64,
    ) -> Result<Option<Aggregated>, RoundError> {
        if !self.complete() {
            let silent: Vec<u16> = self
                .decryptors
                .iter()
                .copied()
                .filter(|&m| !self.answered.contains(&self.members[usize::from(m) - 1]))
                .collect();
            self.unresponsive.extend(silent);
            if attempt >= DECRYPT_ATTEMPTS {
                return Err(RoundError::TooFew {
                    round: self.plan.round,
                    have: self.answered.len(),
                    need: self.decryptors.len(),
                });
            }
            // Those who answered are alive: keep them in the next set.
            let mut order: Vec<u16> = (1..=self.members.len() as u16).collect();
            order.sort_by_key(|m| !self.decryptors.contains(m));
            self.answered.clear();
            return self.request_decryption(order, attempt + 1, now_ms);
        }
        let (Some(key), Some(aggregate)) = (&self.key, &self.aggregate) else {
            return Err(RoundError::SecAgg("no aggregate".into()));
        };
        let words = crypto::he::combine(key, aggregate, &self.partials).map_err(he_error)?;
        let n = aggregate.summands();
        let mean = self
            .codec
            .decode_weighted_mean(&words, n)
            .map_err(he_error)?;
        self.stage = Stage::Closed;
        Ok(Some(Aggregated {
            plan: self.plan.clone(),
            mean_update: mean.mean,
            total_weight: mean.total_weight,
            participants: n as usize,
        }))
    }

    fn finished(
        mut self: Box<Self>,
        result: Result<Aggregated, RoundError>,
        compute_ms: u64,
    ) -> Progress {
        if let Some(last) = self.timings.last_mut() {
            last.1 += compute_ms;
        }
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
        StepPhase::HeCommit => "key share commitments",
        StepPhase::HeReveal => "public key shares",
        StepPhase::HeDeal => "key share fragments",
        StepPhase::HeInput => "ciphertexts",
        StepPhase::HeDecrypt => "partial decryptions",
        _ => "masked-mode messages",
    }
}
