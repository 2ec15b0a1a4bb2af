//! The long-running participant: connect, enroll, join, then follow the coordinator's round
//! tasks, reconnecting with backoff when the coordinator goes away.

use std::sync::Arc;
use std::time::Duration;

use proto::v1::{self as pb, round_task};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::ParticipantError;
use crate::client::{CoordinatorEndpoint, FederationLink, WireTap, connect};
use crate::config::Limits;
use crate::contribution::{self, Contribution};
use crate::encrypted::EncryptedSession;
use crate::identity::SiteIdentity;
use crate::secure::SecureRound;
use crate::trainer::{LocalTrainer, TrainSpec};

/// How to reach and join the federation.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    pub coordinator: CoordinatorEndpoint,
    pub enrollment_token: String,
    pub site_label: String,
    pub federation_tag: String,
    pub limits: Limits,
}

/// What a daemon did before it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub participant_id: String,
    pub federation: String,
    /// Rounds whose update this site uploaded.
    pub rounds_uploaded: u64,
    /// The federation's final version, when it finished.
    pub final_version: Option<u64>,
    pub reconnects: u64,
}

/// A participant daemon with its identity and local trainer.
pub struct Daemon {
    settings: DaemonSettings,
    identity: Arc<SiteIdentity>,
    trainer: Arc<dyn LocalTrainer>,
    pool: Arc<rayon::ThreadPool>,
    tap: Option<Arc<dyn WireTap>>,
    active: Option<ActiveRound>,
    cache: Option<(pb::WeightsRef, Arc<Vec<f32>>)>,
}

struct ActiveRound {
    task: pb::TrainTask,
    /// Local training (or, in an evaluation round, scoring) producing the contribution.
    training: Option<JoinHandle<Result<Contribution, ParticipantError>>>,
    secure: Option<SecureRound>,
    encrypted: Option<EncryptedSession>,
    /// The masked input or sealed ciphertext once computed (kept to retry an interrupted upload).
    masked: Option<Vec<u8>>,
}

enum Outcome {
    Finished,
}

/// Refuses a federation whose differential privacy is weaker than the site's `max_epsilon`
/// (none at all, no budget, or a larger budget). A permanent refusal: the daemon stops.
pub fn check_privacy(
    max_epsilon: Option<f64>,
    joined: &pb::JoinResponse,
) -> Result<(), ParticipantError> {
    let Some(max) = max_epsilon else {
        return Ok(());
    };
    let promised = (joined.dp_noise_multiplier > 0.0 && joined.dp_max_epsilon > 0.0)
        .then_some(joined.dp_max_epsilon);
    match promised {
        Some(eps) if eps <= max => Ok(()),
        Some(eps) => Err(ParticipantError::Config(format!(
            "federation `{}` allows epsilon up to {eps} (delta {}), more than this site's \
             limits.max_epsilon = {max}: not joining",
            joined.federation, joined.dp_delta
        ))),
        None => Err(ParticipantError::Config(format!(
            "federation `{}` has no differential-privacy budget and this site requires \
             epsilon <= {max} (limits.max_epsilon): not joining",
            joined.federation
        ))),
    }
}

impl Daemon {
    pub fn new(
        settings: DaemonSettings,
        identity: Arc<SiteIdentity>,
        trainer: Arc<dyn LocalTrainer>,
    ) -> Result<Self, ParticipantError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.limits.threads)
            .thread_name(|i| format!("gridfed-train-{i}"))
            .build()
            .map_err(|e| ParticipantError::Config(format!("training threads: {e}")))?;
        Ok(Self {
            settings,
            identity,
            trainer,
            pool: Arc::new(pool),
            tap: None,
            active: None,
            cache: None,
        })
    }

    /// Routes every outgoing message through `tap` as well.
    pub fn with_tap(mut self, tap: Arc<dyn WireTap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Runs until the federation is done or `shutdown` resolves.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, ParticipantError> {
        tokio::pin!(shutdown);
        let mut summary = RunSummary::default();
        let limits = self.settings.limits.clone();
        let mut backoff = Duration::from_millis(limits.backoff_initial_ms);
        loop {
            let outcome = tokio::select! {
                () = &mut shutdown => return Ok(summary),
                outcome = self.session(&mut summary, &mut backoff) => outcome,
            };
            match outcome {
                Ok(Outcome::Finished) => return Ok(summary),
                Err(e) if e.nonce_floor().is_some() => {
                    // This site's clock is behind the coordinator's (or was stepped back):
                    // continue above the floor it named, at once.
                    let floor = e.nonce_floor().unwrap_or_default();
                    if !self.identity.raise_nonce_floor(floor) {
                        return Err(ParticipantError::Config(format!(
                            "the coordinator refuses this site's request nonces (unix microseconds) below {floor}, more than 30 days ahead of this machine's clock: set the clock right"
                        )));
                    }
                    warn!(site = %self.settings.site_label, floor, "request nonce below the coordinator's floor (this machine's clock is behind); continuing above it");
                    summary.reconnects += 1;
                    tokio::select! {
                        () = &mut shutdown => return Ok(summary),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(limits.backoff_max_ms));
                }
                Err(e) if e.is_transient() => {
                    warn!(site = %self.settings.site_label, error = %e, retry_in_ms = backoff.as_millis() as u64, "coordinator unreachable; retrying");
                    summary.reconnects += 1;
                    tokio::select! {
                        () = &mut shutdown => return Ok(summary),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(limits.backoff_max_ms));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn session(
        &mut self,
        summary: &mut RunSummary,
        backoff: &mut Duration,
    ) -> Result<Outcome, ParticipantError> {
        let s = &self.settings;
        let client = connect(&s.coordinator).await?;
        let mut link = FederationLink::enroll(
            client,
            self.identity.clone(),
            &s.enrollment_token,
            &s.site_label,
            self.tap.clone(),
        )
        .await?;
        let joined = link.join(&s.federation_tag).await?;
        check_privacy(s.limits.max_epsilon, &joined)?;
        self.trainer
            .check_model(&joined.federation, &joined.model_spec_json)?;
        summary.participant_id = link.participant_id().to_string();
        summary.federation = joined.federation.clone();
        info!(participant = %summary.participant_id, federation = %joined.federation, "joined");
        *backoff = Duration::from_millis(s.limits.backoff_initial_ms);
        loop {
            let task = link
                .task(&joined.federation, self.settings.limits.long_poll_ms)
                .await?;
            match task.task {
                None => return Err(ParticipantError::Protocol("empty task".into())),
                Some(round_task::Task::Idle(idle)) => {
                    if idle.retry_after_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(u64::from(
                            idle.retry_after_ms.min(10_000),
                        )))
                        .await;
                    }
                }
                Some(round_task::Task::Done(done)) => {
                    summary.final_version = Some(done.final_version);
                    info!(participant = %summary.participant_id, version = done.final_version, "federation finished");
                    if let Some(reference) = &done.final_weights {
                        self.finish(&mut link, &joined.federation, reference)
                            .await?;
                    }
                    return Ok(Outcome::Finished);
                }
                Some(round_task::Task::Train(train)) => {
                    let result = self.on_train(&mut link, &joined, train).await;
                    self.settle(result, summary).await?;
                }
                Some(round_task::Task::Step(step)) => {
                    let result = self.on_step(&mut link, step).await;
                    self.settle(result, summary).await?;
                }
            }
        }
    }

    /// Counts uploads; a round-level failure (bad message, training error) drops this round
    /// only, connection failures end the session.
    async fn settle(
        &mut self,
        result: Result<bool, ParticipantError>,
        summary: &mut RunSummary,
    ) -> Result<(), ParticipantError> {
        match result {
            Ok(uploaded) => {
                summary.rounds_uploaded += u64::from(uploaded);
                Ok(())
            }
            Err(e)
                if e.is_transient()
                    || matches!(e, ParticipantError::Config(_) | ParticipantError::Io { .. }) =>
            {
                Err(e)
            }
            Err(e) => {
                warn!(site = %self.settings.site_label, error = %e, "round abandoned");
                self.active = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(())
            }
        }
    }

    async fn global_weights(
        &mut self,
        link: &mut FederationLink,
        federation: &str,
        reference: &pb::WeightsRef,
    ) -> Result<Arc<Vec<f32>>, ParticipantError> {
        if let Some((cached, weights)) = &self.cache
            && cached == reference
        {
            return Ok(weights.clone());
        }
        let weights = Arc::new(link.download(federation, reference).await?);
        self.cache = Some((reference.clone(), weights.clone()));
        Ok(weights)
    }

    /// Downloads the final weights (digest-checked) and hands them to the trainer's `finish`.
    async fn finish(
        &mut self,
        link: &mut FederationLink,
        federation: &str,
        reference: &pb::WeightsRef,
    ) -> Result<(), ParticipantError> {
        let weights = self.global_weights(link, federation, reference).await?;
        let (trainer, pool) = (self.trainer.clone(), self.pool.clone());
        tokio::task::spawn_blocking(move || pool.install(|| trainer.finish(&weights)))
            .await
            .map_err(|e| ParticipantError::Protocol(format!("finishing: {e}")))?
    }

    /// Starts the round's local work: training from `global`, or scoring it on the holdout.
    fn start_training(
        &self,
        task: &pb::TrainTask,
        global: Arc<Vec<f32>>,
    ) -> JoinHandle<Result<Contribution, ParticipantError>> {
        let spec = TrainSpec {
            round: task.round,
            from_version: task.global.as_ref().map_or(0, |g| g.version),
            model_spec_json: task.model_spec_json.clone(),
            local_epochs: task.local_epochs,
            learning_rate: task.learning_rate,
            fedprox_mu: task.fedprox_mu,
        };
        let (trainer, pool) = (self.trainer.clone(), self.pool.clone());
        let (clip, max_weight) = (task.clip, task.max_weight);
        let dp = contribution::round_dp(task);
        if contribution::is_evaluation(task) {
            return tokio::task::spawn_blocking(move || {
                // A site that cannot score abstains rather than leaving the round to time out.
                let scores = pool
                    .install(|| trainer.evaluate(&spec, &global))
                    .inspect_err(|e| {
                        warn!(round = spec.round, error = %e, "cannot score this version; abstaining");
                    })
                    .ok();
                contribution::from_scores(scores.as_ref(), clip, max_weight)
            });
        }
        tokio::task::spawn_blocking(move || {
            let result = pool.install(|| trainer.train(&spec, &global))?;
            contribution::from_training(result, &global, clip, max_weight, dp)
        })
    }

    /// The contribution to share: a clipped, finite update with its FedAvg weight, or scores.
    async fn finish_training(&mut self) -> Result<(Vec<f32>, u32), ParticipantError> {
        let limit = Duration::from_secs(self.settings.limits.max_round_seconds);
        let active = self
            .active
            .as_mut()
            .ok_or_else(|| ParticipantError::Protocol("no active round".into()))?;
        let handle = active
            .training
            .take()
            .ok_or_else(|| ParticipantError::Protocol("training already consumed".into()))?;
        let result = tokio::time::timeout(limit, handle)
            .await
            .map_err(|_| {
                ParticipantError::Protocol(format!("local training exceeded {} s", limit.as_secs()))
            })?
            .map_err(|e| ParticipantError::Protocol(format!("training task failed: {e}")))??;
        Ok((result.values, result.weight))
    }

    /// Handles a new round's task. Returns true if an update was uploaded.
    async fn on_train(
        &mut self,
        link: &mut FederationLink,
        joined: &pb::JoinResponse,
        task: pb::TrainTask,
    ) -> Result<bool, ParticipantError> {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.task.round == task.round)
        {
            // Already working on it (e.g. the key advertisement was refused and is retried below).
            debug!(round = task.round, "round task repeated");
        }
        let reference = task.global.clone().ok_or_else(|| {
            ParticipantError::Protocol("round task without global weights".into())
        })?;
        let global = self
            .global_weights(link, &task.federation, &reference)
            .await?;
        let training = Some(self.start_training(&task, global.clone()));
        let protection = pb::ProtectionMode::try_from(task.protection)
            .unwrap_or(pb::ProtectionMode::Unspecified);
        info!(participant = %link.participant_id(), round = task.round, protection = ?protection, "round task received");
        match protection {
            pb::ProtectionMode::Plain => {
                self.active = Some(ActiveRound {
                    task: task.clone(),
                    training,
                    secure: None,
                    encrypted: None,
                    masked: None,
                });
                let (update, weight) = self.finish_training().await?;
                link.upload(
                    &task.federation,
                    task.round,
                    pb::ElementType::F32,
                    u64::from(weight),
                    proto::chunk::f32_to_bytes(&update),
                )
                .await?;
                self.active = None;
                Ok(true)
            }
            pb::ProtectionMode::Masked => {
                let secagg_id = crate::secagg_id(link.participant_id())?;
                let (secure, advert) = SecureRound::join(
                    self.identity.signing_key(),
                    secagg_id,
                    &joined.coordinator_key,
                    &task,
                )?;
                let (federation, round) = (task.federation.clone(), task.round);
                self.active = Some(ActiveRound {
                    task,
                    training,
                    secure: Some(secure),
                    encrypted: None,
                    masked: None,
                });
                link.submit(&federation, round, pb::SecAggPhase::AdvertiseKeys, advert)
                    .await?;
                Ok(false)
            }
            pb::ProtectionMode::Encrypted => {
                let id = crate::secagg_id(link.participant_id())?;
                let (session, commitment) = EncryptedSession::join(
                    self.identity.signing_key(),
                    id,
                    &joined.coordinator_key,
                    &task,
                )?;
                let (federation, round) = (task.federation.clone(), task.round);
                self.active = Some(ActiveRound {
                    task,
                    training,
                    secure: None,
                    encrypted: Some(session),
                    masked: None,
                });
                if let Some(commitment) = commitment {
                    link.submit(&federation, round, pb::SecAggPhase::HeCommit, commitment)
                        .await?;
                }
                Ok(false)
            }
            other => Err(ParticipantError::Protocol(format!(
                "unsupported protection mode {other:?}"
            ))),
        }
    }

    /// Handles one encrypted-round step. Returns true if an update was uploaded.
    async fn on_encrypted_step(
        &mut self,
        link: &mut FederationLink,
        step: pb::ProtocolStep,
    ) -> Result<bool, ParticipantError> {
        let no_round = || ParticipantError::Protocol("no encrypted round".into());
        let active = self.active.as_mut().ok_or_else(no_round)?;
        let federation = active.task.federation.clone();
        let session = active.encrypted.as_mut().ok_or_else(no_round)?;
        match pb::SecAggPhase::try_from(step.phase) {
            Ok(pb::SecAggPhase::HeReveal) => {
                let share = session.reveal(&step.payload)?;
                link.submit(&federation, step.round, pb::SecAggPhase::HeReveal, share)
                    .await?;
                Ok(false)
            }
            Ok(pb::SecAggPhase::HeDeal) => {
                let fragments = session.deal(&step.payload)?;
                link.submit(&federation, step.round, pb::SecAggPhase::HeDeal, fragments)
                    .await?;
                Ok(false)
            }
            Ok(pb::SecAggPhase::HeInput) => {
                // A step repeated after a failed upload finds the ciphertext ready.
                if active.masked.is_none() {
                    if !session.ready() {
                        session.prepare_input(&step.payload)?;
                    }
                    let (update, weight) = self.finish_training().await?;
                    let active = self.active.as_mut().ok_or_else(no_round)?;
                    let session = active.encrypted.as_mut().ok_or_else(no_round)?;
                    active.masked = Some(session.encrypt(&update, weight)?);
                }
                let sealed = self
                    .active
                    .as_ref()
                    .and_then(|a| a.masked.clone())
                    .unwrap_or_default();
                link.upload(
                    &federation,
                    step.round,
                    pb::ElementType::Ciphertext,
                    0,
                    sealed,
                )
                .await?;
                Ok(true)
            }
            Ok(pb::SecAggPhase::HeDecrypt) => {
                let request = session.decrypt_request(&step.payload)?;
                let aggregate = link
                    .download_aggregate(&federation, step.round, &request)
                    .await?;
                let active = self.active.as_mut().ok_or_else(no_round)?;
                let session = active.encrypted.as_mut().ok_or_else(no_round)?;
                let partial = session.partial_decrypt(&request, &aggregate)?;
                link.upload(
                    &federation,
                    step.round,
                    pb::ElementType::PartialDecryption,
                    0,
                    partial,
                )
                .await?;
                Ok(false)
            }
            _ => Err(ParticipantError::Protocol(format!(
                "unexpected encrypted-round phase {}",
                step.phase
            ))),
        }
    }

    /// Handles one secure-aggregation step. Returns true if an update was uploaded.
    async fn on_step(
        &mut self,
        link: &mut FederationLink,
        step: pb::ProtocolStep,
    ) -> Result<bool, ParticipantError> {
        let Some(active) = self.active.as_mut().filter(|a| a.task.round == step.round) else {
            // A step of a round this daemon is not part of (e.g. it restarted): wait it out.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(false);
        };
        if active.encrypted.is_some() {
            return self.on_encrypted_step(link, step).await;
        }
        let federation = active.task.federation.clone();
        let secure = active
            .secure
            .as_mut()
            .ok_or_else(|| ParticipantError::Protocol("protocol step in a plain round".into()))?;
        // A step repeated after a failed upload finds the state already past it.
        let repeated_relay = step.phase == pb::SecAggPhase::MaskedInput as i32
            && (secure.ready_to_mask() || active.masked.is_some());
        let reply = if repeated_relay {
            None
        } else {
            secure.handle(&step.payload)?
        };
        match pb::SecAggPhase::try_from(step.phase) {
            Ok(pb::SecAggPhase::ShareKeys) => {
                let shares = reply.ok_or_else(|| {
                    ParticipantError::Protocol("key directory produced no shares".into())
                })?;
                link.submit(&federation, step.round, pb::SecAggPhase::ShareKeys, shares)
                    .await?;
                Ok(false)
            }
            Ok(pb::SecAggPhase::MaskedInput) => {
                if active.masked.is_none() {
                    let (update, weight) = self.finish_training().await?;
                    let active = self
                        .active
                        .as_mut()
                        .ok_or_else(|| ParticipantError::Protocol("no active round".into()))?;
                    let secure = active
                        .secure
                        .as_mut()
                        .ok_or_else(|| ParticipantError::Protocol("no secure state".into()))?;
                    active.masked = Some(secure.mask(&update, weight)?);
                }
                let masked = self
                    .active
                    .as_ref()
                    .and_then(|a| a.masked.clone())
                    .unwrap_or_default();
                link.upload(&federation, step.round, pb::ElementType::Masked, 0, masked)
                    .await?;
                Ok(true)
            }
            Ok(pb::SecAggPhase::Unmask) => {
                let response = reply.ok_or_else(|| {
                    ParticipantError::Protocol("unmask request produced no response".into())
                })?;
                link.submit(&federation, step.round, pb::SecAggPhase::Unmask, response)
                    .await?;
                self.active = None;
                Ok(false)
            }
            _ => Err(ParticipantError::Protocol(format!(
                "unexpected protocol phase {}",
                step.phase
            ))),
        }
    }
}
