//! The round lifecycle of every federation: start (selection), advance through the protocol
//! phases, and settle (commit a version, record an evaluation, or fail back to idle).

use std::collections::BTreeMap;
use std::sync::Arc;

use crypto::dp::RdpAccountant;
use tracing::{info, warn};

use super::{AVAILABLE_WINDOW_MS, Hub, RoundState, random_seed};
use crate::config::{FederationSpec, Protection};
use crate::round::{
    Aggregated, Deadlines, PlainCollecting, RoundError, RoundPlan, RoundPurpose, WeightsRef,
};
use crate::store::{
    DP_ACCOUNTANT, DpAccounting, FederationRecord, InFlightRound, ModelVersion, ParticipantRecord,
    VersionEvaluation,
};
use crate::{CoordinatorError, round};

impl Hub {
    /// Moves every federation's round forward: starts rounds, closes phases at their deadline
    /// or when complete, commits versions.
    pub fn advance(&mut self, now_ms: u64) {
        let names: Vec<String> = self.federations.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.advance_one(&name, now_ms) {
                warn!(federation = %name, error = %e, "round step failed");
            }
            self.report_waiting(&name, now_ms);
        }
    }

    /// A round that waits says so every [`WAIT_REPORT_MS`]: its phase, how long it has waited
    /// and when the next deadline lets it go on without the silent participants. Without this
    /// a round stalled on sites that never answer looks like a hung coordinator.
    fn report_waiting(&mut self, name: &str, now_ms: u64) {
        let Some(f) = self.federations.get_mut(name) else {
            return;
        };
        let plan = match &f.round {
            RoundState::Plain(c) => c.plan(),
            RoundState::Masked(m) => m.plan(),
            RoundState::Encrypted(e) => e.plan(),
            RoundState::Idle { .. } | RoundState::Done => return,
        };
        if now_ms.saturating_sub(plan.started_unix_ms) < WAIT_REPORT_MS
            || now_ms.saturating_sub(f.waiting_reported_ms) < WAIT_REPORT_MS
        {
            return;
        }
        let d = &plan.deadlines;
        let next_deadline = [d.keys_unix_ms, d.upload_unix_ms, d.unmask_unix_ms]
            .into_iter()
            .find(|&t| t > now_ms)
            .unwrap_or(d.unmask_unix_ms);
        info!(
            federation = name,
            round = plan.round,
            phase = f.round.name(),
            selected = plan.selected.len(),
            waited_s = now_ms.saturating_sub(plan.started_unix_ms) / 1000,
            next_deadline_in_s = next_deadline.saturating_sub(now_ms) / 1000,
            "round waiting for participants"
        );
        f.waiting_reported_ms = now_ms;
    }

    fn advance_one(&mut self, name: &str, now_ms: u64) -> Result<(), CoordinatorError> {
        let Some(f) = self.federations.get_mut(name) else {
            return Ok(());
        };
        let state = std::mem::replace(&mut f.round, RoundState::Done);
        let before = state.name();
        let next = match state {
            // A failure never leaves the federation `Done`: it stays (or becomes) idle.
            RoundState::Idle { since_ms } => match self.try_start(name, since_ms, now_ms) {
                Ok(Some(started)) => started,
                Ok(None) => RoundState::Idle { since_ms },
                Err(e) => {
                    self.restore_idle(name, since_ms);
                    return Err(e);
                }
            },
            RoundState::Plain(c) => {
                if c.is_complete() || now_ms >= c.plan().deadlines.upload_unix_ms {
                    let plan = c.plan().clone();
                    self.metrics.observe_phase(
                        name,
                        "collect",
                        now_ms.saturating_sub(plan.started_unix_ms),
                    );
                    let started = std::time::Instant::now();
                    let result = c.close();
                    let compute_ms = started.elapsed().as_millis() as u64;
                    self.metrics.observe_phase(name, "aggregate", compute_ms);
                    match self.finish(name, plan, result, now_ms + compute_ms) {
                        Ok(next) => next,
                        Err(e) => {
                            self.abandon_round(name, now_ms);
                            return Err(e);
                        }
                    }
                } else {
                    RoundState::Plain(c)
                }
            }
            RoundState::Masked(m) => match m.advance(now_ms) {
                round::masked::Progress::Running(mut m) => {
                    for (phase, ms) in m.take_timings() {
                        self.metrics.observe_phase(name, phase, ms);
                    }
                    RoundState::Masked(m)
                }
                round::masked::Progress::Finished(done) => self.conclude(name, *done, now_ms)?,
            },
            RoundState::Encrypted(e) => match e.advance(now_ms) {
                round::encrypted::Progress::Running(mut e) => {
                    for (phase, ms) in e.take_timings() {
                        self.metrics.observe_phase(name, phase, ms);
                    }
                    RoundState::Encrypted(e)
                }
                round::encrypted::Progress::Finished(done) => self.conclude(name, *done, now_ms)?,
            },
            RoundState::Done => RoundState::Done,
        };
        let after = next.name();
        if let Some(f) = self.federations.get_mut(name) {
            f.round = next;
        }
        if before != after {
            crate::faults::crash_point(&format!("enter:{after}"));
            self.generation += 1;
            if let Some(f) = self.federations.get(name)
                && let (Some(round), RoundState::Masked(_) | RoundState::Encrypted(_)) =
                    (self.store.in_flight(name)?, &f.round)
            {
                self.store.update_round(
                    name,
                    &InFlightRound {
                        phase: after.to_string(),
                        ..round
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Puts a federation whose round step failed back to idle (the round, if any, is lost).
    fn restore_idle(&mut self, name: &str, since_ms: u64) {
        if let Some(f) = self.federations.get_mut(name) {
            f.round = RoundState::Idle { since_ms };
        }
    }

    /// A round this process began could not finish (its commit failed: a full disk, a lost
    /// database): the federation goes back to idle and the round's in-flight record is
    /// cleared, now or, if the store refuses that too, before the next round begins. Without
    /// this every later round would be refused as conflicting with the dead one.
    fn abandon_round(&mut self, name: &str, since_ms: u64) {
        self.restore_idle(name, since_ms);
        let cleared = self.store.end_round(name);
        if let Some(f) = self.federations.get_mut(name) {
            f.unfinished_round = cleared.is_err();
        }
        self.metrics.round_aborted(name);
    }

    fn try_start(
        &mut self,
        name: &str,
        since_ms: u64,
        now_ms: u64,
    ) -> Result<Option<RoundState>, CoordinatorError> {
        let participants = &self.participants;
        let Some(f) = self.federations.get_mut(name) else {
            return Ok(None);
        };
        if f.unfinished_round {
            self.store.end_round(name)?;
            f.unfinished_round = false;
        }
        let mut available: Vec<String> = f
            .members
            .iter()
            .filter(|m| participants.get(*m).is_some_and(|p| !p.revoked))
            .filter(|m| {
                f.last_seen.get(*m).is_some_and(|t| {
                    now_ms.saturating_sub(*t) <= AVAILABLE_WINDOW_MS
                        && f.failed_round_members
                            .get(*m)
                            .is_none_or(|failed| t > failed)
                })
            })
            .cloned()
            .collect();
        let spec = &f.spec;
        if !f.latest.evaluation.is_pending() && budget_exhausted(spec, &f.record).is_some() {
            // Restarts and reconfigurations land here too: the budget is never overrun.
            return Ok(None);
        }
        // "Every member" means those enrolled so far; an explicit per-round count waits (up to
        // the selection timeout) for members that have not enrolled or polled yet.
        let target = if spec.participants_per_round == 0 {
            f.members.len()
        } else {
            spec.participants_per_round
        };
        let wait_for = target.max(spec.min_participants);
        let timed_out = now_ms.saturating_sub(since_ms) >= spec.selection_timeout_ms;
        if available.len() < wait_for && !(timed_out && available.len() >= spec.min_participants) {
            return Ok(None);
        }
        // Over-selection takes extra members that happen to be available, to absorb dropouts.
        let selected = ((target as f64) * (1.0 + spec.over_selection)).ceil() as usize;
        let seed = random_seed();
        shuffle(&mut available, &seed);
        available.truncate(selected.max(wait_for));
        available.sort();
        let round = f.record.next_round;
        // A version awaiting its federated evaluation is scored before training goes on.
        let purpose = if f.latest.evaluation.is_pending() {
            RoundPurpose::Evaluate
        } else {
            RoundPurpose::Train
        };
        let keys = now_ms + spec.keys_timeout_ms;
        let upload = keys + spec.upload_timeout_ms;
        let plan = RoundPlan {
            purpose,
            federation: name.to_string(),
            round,
            selected: available,
            target: target.max(spec.min_participants),
            min_participants: spec.min_participants,
            global: WeightsRef {
                version: f.latest.version,
                length: f.latest.length,
                sha256: proto::chunk::sha256(&f.global_bytes),
            },
            protection: spec.protection,
            deadlines: Deadlines {
                keys_unix_ms: keys,
                upload_unix_ms: upload,
                unmask_unix_ms: upload + spec.unmask_timeout_ms,
            },
            seed,
            started_unix_ms: now_ms,
            spec: spec.clone(),
        };
        f.record.next_round += 1;
        let state = match spec.protection {
            Protection::Plain => {
                warn!(
                    federation = name,
                    round, "PLAINTEXT round: updates are visible to the coordinator (testing only)"
                );
                RoundState::Plain(Box::new(PlainCollecting::new(plan.clone())))
            }
            Protection::Masked => RoundState::Masked(Box::new(round::masked::MaskedRound::start(
                plan.clone(),
                &selected_keys(participants, &plan.selected),
                &feeders(participants, &plan.selected),
                &self.identity,
                now_ms,
            )?)),
            Protection::Encrypted => {
                RoundState::Encrypted(Box::new(round::encrypted::EncryptedRound::start(
                    plan.clone(),
                    &selected_keys(participants, &plan.selected),
                    &self.identity,
                    now_ms,
                )?))
            }
        };
        if let Err(e) = self.store.begin_round(
            &f.record,
            &InFlightRound {
                round,
                phase: state.name().into(),
                selected: plan.selected.clone(),
                started_unix_ms: now_ms,
            },
        ) {
            // Not begun: the number is not used up.
            f.record.next_round = round;
            return Err(e);
        }
        self.metrics.round_started(name, plan.selected.len());
        info!(
            federation = name,
            round,
            selected = plan.selected.len(),
            protection = spec.protection.name(),
            purpose = ?purpose,
            "round started"
        );
        Ok(Some(state))
    }

    /// Records a finished protected round's phase timings and commits (or fails) it; on a
    /// store error the federation goes back to idle so a new round can follow.
    fn conclude(
        &mut self,
        name: &str,
        done: round::masked::Finished,
        now_ms: u64,
    ) -> Result<RoundState, CoordinatorError> {
        let round::masked::Finished {
            plan,
            result,
            timings,
            compute_ms,
        } = done;
        for (phase, ms) in timings {
            self.metrics.observe_phase(name, phase, ms);
        }
        let next = self.finish(name, plan, result, now_ms + compute_ms);
        if next.is_err() {
            self.abandon_round(name, now_ms);
        }
        next
    }

    fn finish(
        &mut self,
        name: &str,
        plan: RoundPlan,
        result: Result<Aggregated, RoundError>,
        now_ms: u64,
    ) -> Result<RoundState, CoordinatorError> {
        if plan.purpose == RoundPurpose::Evaluate {
            return self.finish_evaluation(name, plan, result, now_ms);
        }
        let Some(f) = self.federations.get_mut(name) else {
            return Ok(RoundState::Done);
        };
        let aggregated = match result {
            Ok(a) => a,
            Err(e) => {
                warn!(federation = name, round = plan.round, error = %e, "round failed; a new round follows");
                note_failed_round(f, &plan, now_ms);
                self.store.end_round(name)?;
                self.metrics.round_failed(name);
                return Ok(RoundState::Idle { since_ms: now_ms });
            }
        };
        let commit_started = std::time::Instant::now();
        let spec = &f.spec;
        let momentum = spec.server_momentum > 0.0;
        let mut velocity = if momentum {
            f.velocity.clone()
        } else {
            Vec::new()
        };
        let weights = crate::server_momentum::step(
            &f.global,
            &aggregated.mean_update,
            &mut velocity,
            spec.server_momentum,
            spec.server_learning_rate,
        );
        let velocity_sha256 = if momentum {
            Some(self.artifacts.put(&proto::chunk::f32_to_bytes(&velocity))?)
        } else {
            velocity.clear();
            None
        };
        let bytes = proto::chunk::f32_to_bytes(&weights);
        let sha256 = self.artifacts.put(&bytes)?;
        let mut version = ModelVersion {
            federation: name.to_string(),
            version: f.latest.version + 1,
            round: plan.round,
            parent: Some(f.latest.version),
            length: weights.len() as u64,
            sha256,
            participants: aggregated.participants as u64,
            protection: plan.protection,
            created_unix_ms: now_ms,
            evaluation: if spec.evaluate {
                VersionEvaluation::Pending { attempts: 0 }
            } else {
                VersionEvaluation::NotRequested
            },
            dp: None,
        };
        let privacy_spent = spend_round(spec, &f.record).or_else(|| f.record.privacy_spent.clone());
        if let (Some(dp), Some(spent)) = (&spec.dp, &privacy_spent) {
            version.dp = Some(DpAccounting {
                epsilon: spent.epsilon(dp.delta).0,
                delta: dp.delta,
                noise_multiplier: dp.noise_multiplier,
                clip_l2: dp.clip_l2,
                rounds: spent.rounds,
                sampling_rate: 1.0,
                accountant: DP_ACCOUNTANT.into(),
            });
        }
        let record = FederationRecord {
            latest_version: version.version,
            velocity_sha256,
            privacy_spent,
            ..f.record.clone()
        };
        crate::faults::crash_point("commit:before");
        self.store.commit_version(&record, &version)?;
        crate::faults::crash_point("commit:after");
        self.settled += 1;
        info!(
            federation = name,
            round = plan.round,
            version = version.version,
            participants = aggregated.participants,
            epsilon = record
                .privacy_spent
                .as_ref()
                .zip(spec.dp.as_ref())
                .map(|(a, d)| a.epsilon(d.delta).0),
            "round aggregated; version committed"
        );
        // Applying the update and committing the version are part of the round.
        let commit_ms = commit_started.elapsed().as_millis() as u64;
        self.metrics.observe_phase(name, "commit", commit_ms);
        self.metrics.round_completed(
            name,
            (now_ms + commit_ms).saturating_sub(plan.started_unix_ms),
        );
        f.record = record;
        f.global = Arc::new(weights);
        f.global_bytes = Arc::new(bytes);
        f.velocity = velocity;
        f.latest = version;
        Ok(next_round_state(&f.spec, &f.record, &f.latest, now_ms))
    }

    /// Stores the fleet scores of an evaluation round with the version they score; a failed
    /// round is retried up to [`EVALUATION_ATTEMPTS`] times, then recorded as failed so the
    /// federation goes on (and the version's manifest says it has no federated metrics).
    fn finish_evaluation(
        &mut self,
        name: &str,
        plan: RoundPlan,
        result: Result<Aggregated, RoundError>,
        now_ms: u64,
    ) -> Result<RoundState, CoordinatorError> {
        let Some(f) = self.federations.get_mut(name) else {
            return Ok(RoundState::Done);
        };
        let mut version = f.latest.clone();
        let attempts = match version.evaluation {
            VersionEvaluation::Pending { attempts } => attempts + 1,
            _ => 1,
        };
        let scores = result.map_err(|e| e.to_string()).and_then(|a| {
            models::FleetScores::from_weighted_mean(
                &a.mean_update,
                a.total_weight,
                a.participants as u64,
            )
            .map_err(|e| e.to_string())
        });
        version.evaluation = match scores {
            Ok(scores) => {
                info!(
                    federation = name,
                    round = plan.round,
                    version = version.version,
                    sites = scores.sites,
                    nmae = scores.nmae,
                    "federated evaluation recorded"
                );
                self.metrics.evaluation_completed(name);
                VersionEvaluation::Scored {
                    round: plan.round,
                    protection: plan.protection,
                    scores,
                }
            }
            Err(reason) => {
                warn!(federation = name, round = plan.round, version = version.version,
                    attempts, error = %reason, "federated evaluation round failed");
                note_failed_round(f, &plan, now_ms);
                self.metrics.round_failed(name);
                if attempts < EVALUATION_ATTEMPTS {
                    VersionEvaluation::Pending { attempts }
                } else {
                    VersionEvaluation::Failed { reason }
                }
            }
        };
        crate::faults::crash_point("evaluation:record");
        self.store.record_evaluation(&version)?;
        if let Some(ratio) = crate::registry::divergence(&version, &self.store.versions(name)?)
            && ratio > crate::registry::DIVERGENCE_FACTOR
        {
            warn!(
                federation = name,
                version = version.version,
                nmae_vs_best_earlier = ratio,
                "federation diverging: this version's federated nMAE is {ratio:.1}x the best \
                 earlier version's; lower training.server_momentum or learning_rate, and do not \
                 promote it"
            );
            self.metrics.divergence(name);
        }
        self.settled += 1;
        f.latest = version;
        Ok(next_round_state(&f.spec, &f.record, &f.latest, now_ms))
    }
}

/// Rounds an evaluation may take before the version is recorded as not evaluated.
const EVALUATION_ATTEMPTS: u32 = 3;

/// How often a running round reports that it is still waiting.
const WAIT_REPORT_MS: u64 = 30_000;

/// What follows a settled round: another round (training, or the latest version's pending
/// evaluation), or nothing once the last version is trained and evaluated.
/// A DP federation that has spent its budget also stops (after its pending evaluation).
pub(super) fn next_round_state(
    spec: &FederationSpec,
    record: &FederationRecord,
    latest: &ModelVersion,
    now_ms: u64,
) -> RoundState {
    let exhausted = budget_exhausted(spec, record);
    if let Some(next) = exhausted {
        warn!(
            federation = %spec.name,
            version = latest.version,
            epsilon_after_next_round = next,
            max_epsilon = spec.dp.as_ref().and_then(|d| d.max_epsilon),
            "privacy budget spent: no further training round starts"
        );
    }
    let trained = latest.version >= spec.rounds || exhausted.is_some();
    if trained && !latest.evaluation.is_pending() {
        RoundState::Done
    } else {
        RoundState::Idle { since_ms: now_ms }
    }
}

/// The epsilon one more training round would bring a DP federation to, when that exceeds its
/// budget (`dp.max_epsilon`).
pub(super) fn budget_exhausted(spec: &FederationSpec, record: &FederationRecord) -> Option<f64> {
    let dp = spec.dp.as_ref()?;
    let max = dp.max_epsilon?;
    let next = record
        .privacy_spent
        .clone()
        .unwrap_or_default()
        .epsilon_after(1.0, dp.noise_multiplier, 1, dp.delta);
    (next > max).then_some(next)
}

/// The RDP accountant after one more committed round of a DP federation. Sites are not
/// Poisson-sampled by the coordinator, so no amplification by sampling is claimed (q = 1).
pub(super) fn spend_round(
    spec: &FederationSpec,
    record: &FederationRecord,
) -> Option<RdpAccountant> {
    let dp = spec.dp.as_ref()?;
    let mut spent = record.privacy_spent.clone().unwrap_or_default();
    spent.compose(1.0, dp.noise_multiplier, 1);
    Some(spent)
}

/// Remembers who was in a round that failed (see `Federation::failed_round_members`).
fn note_failed_round(f: &mut super::Federation, plan: &RoundPlan, now_ms: u64) {
    f.failed_round_members.clear();
    for member in &plan.selected {
        f.failed_round_members.insert(member.clone(), now_ms);
    }
}

/// The Ed25519 keys of the selected participants.
fn selected_keys(
    participants: &BTreeMap<String, ParticipantRecord>,
    selected: &[String],
) -> Vec<(String, [u8; 32])> {
    selected
        .iter()
        .filter_map(|id| {
            let key = hex::decode(&participants.get(id)?.public_key).ok()?;
            Some((id.clone(), key.try_into().ok()?))
        })
        .collect()
}

/// The feeder of each selected site, from its site label (see [`crate::HierarchySpec`]).
fn feeders(
    participants: &BTreeMap<String, ParticipantRecord>,
    selected: &[String],
) -> std::collections::HashMap<String, String> {
    selected
        .iter()
        .filter_map(|id| {
            let label = &participants.get(id)?.site_label;
            Some((
                id.clone(),
                crate::HierarchySpec::feeder_of(label).to_string(),
            ))
        })
        .collect()
}

/// Fisher-Yates driven by a ChaCha-free, seed-derived SHA-256 counter stream (selection only
/// needs to be unpredictable to participants, not cryptographically uniform).
fn shuffle(items: &mut [String], seed: &[u8; 32]) {
    use sha2::{Digest, Sha256};
    for i in (1..items.len()).rev() {
        let mut h = Sha256::new();
        h.update(seed);
        h.update((i as u64).to_le_bytes());
        let r = u64::from_le_bytes(h.finalize()[..8].try_into().unwrap_or([0; 8]));
        items.swap(i, (r % (i as u64 + 1)) as usize);
    }
}
