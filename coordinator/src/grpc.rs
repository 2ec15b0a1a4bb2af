//! The tonic shell: authenticates and decodes requests, calls the [`Hub`] on blocking threads,
//! converts results to proto messages. Domain errors become statuses in [`status_of`] only.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::bytes::Bytes;
use proto::auth::payload_digest;
use proto::chunk::Reassembly;
use proto::v1::federation_server::Federation;
use proto::v1::{self as pb, round_task, upload_chunk};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::debug;

use crate::CoordinatorError;
use crate::hub::{Hub, Task, UploadKind};
use crate::round::masked::StepPhase;
use crate::round::{RoundError, RoundPlan};

/// The one place domain errors become gRPC statuses.
pub fn status_of(error: &CoordinatorError) -> Status {
    use CoordinatorError as E;
    let code = match error {
        E::Unauthenticated
        | E::UnknownParticipant(_)
        | E::BadSignature(_)
        | E::Replay { .. }
        | E::BadToken => Code::Unauthenticated,
        E::Revoked(_) | E::NotMember { .. } => Code::PermissionDenied,
        E::Invalid(_) => Code::InvalidArgument,
        E::Chunk(proto::chunk::ChunkError::TooLarge { .. }) => Code::ResourceExhausted,
        E::Chunk(_) => Code::InvalidArgument,
        E::UnknownFederation(_) | E::UnknownTag(_) | E::UnknownVersion { .. } => Code::NotFound,
        E::Round(r) => match r {
            RoundError::WrongRound { .. } | RoundError::WrongPhase { .. } => {
                Code::FailedPrecondition
            }
            RoundError::NotSelected(_) => Code::PermissionDenied,
            RoundError::AlreadySubmitted(_) => Code::AlreadyExists,
            RoundError::Malformed { .. } | RoundError::SecAgg(_) => Code::InvalidArgument,
            RoundError::TooFew { .. } => Code::Aborted,
        },
        // The round moved on under another coordinator: the caller asks again.
        E::Conflict(_) => Code::Aborted,
        E::Store(_)
        | E::Artifact { .. }
        | E::CorruptArtifact(_)
        | E::MissingArtifact(_)
        | E::Config(_) => Code::Internal,
    };
    // Internal details stay in our logs.
    let message = if code == Code::Internal {
        "internal coordinator error".to_string()
    } else {
        error.to_string()
    };
    if code == Code::Internal {
        tracing::error!(error = %error, "internal error");
    }
    let mut status = Status::new(code, message);
    if let E::Replay { floor, .. } = error
        && let Ok(value) = floor.to_string().parse()
    {
        status
            .metadata_mut()
            .insert(proto::auth::NONCE_FLOOR_METADATA, value);
    }
    status
}

/// Round time (see [`crate::clock`]): what every call into the hub is timed by.
pub(crate) fn now_ms() -> u64 {
    crate::clock::round_ms()
}

/// The `gridfed.federation.v1.Federation` service.
#[derive(Clone)]
pub struct FederationService {
    hub: Arc<Mutex<Hub>>,
    /// Carries the hub generation: long polls wake when it changes.
    changes: watch::Sender<u64>,
    stopping: watch::Receiver<bool>,
    coordinator_key: [u8; 32],
    uploads: Arc<crate::limits::UploadGate>,
}

impl FederationService {
    pub(crate) fn new(
        hub: Arc<Mutex<Hub>>,
        changes: watch::Sender<u64>,
        stopping: watch::Receiver<bool>,
        coordinator_key: [u8; 32],
        uploads: crate::limits::UploadGate,
    ) -> Self {
        Self {
            hub,
            changes,
            stopping,
            coordinator_key,
            uploads: Arc::new(uploads),
        }
    }

    /// Runs `f` on the hub on a blocking thread and publishes phase changes.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Hub) -> Result<T, CoordinatorError> + Send + 'static,
    ) -> Result<T, Status> {
        let hub = self.hub.clone();
        let changes = self.changes.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut hub = hub
                .lock()
                .map_err(|_| CoordinatorError::Store("coordinator state poisoned".into()))?;
            let result = f(&mut hub);
            let generation = hub.generation();
            changes.send_if_modified(|g| std::mem::replace(g, generation) != generation);
            if result.is_err() {
                hub.metrics().rejected();
            }
            result
        })
        .await
        .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?;
        result.map_err(|e| status_of(&e))
    }

    async fn authenticate<M: prost::Message + Send + 'static>(
        &self,
        method: &'static str,
        federation: String,
        round: u64,
        auth: Option<pb::RequestAuth>,
        unsigned: M,
    ) -> Result<String, Status> {
        let digest = payload_digest(&unsigned);
        self.call(move |hub| hub.authenticate(method, &federation, round, auth.as_ref(), digest))
            .await
    }
}

fn train_task(plan: &RoundPlan, opening: Option<Arc<Vec<u8>>>) -> pb::TrainTask {
    let spec = &plan.spec;
    // The protection's opening message: a signed secagg plan or the encrypted committee.
    let opening = opening.map(|p| p.as_ref().clone()).unwrap_or_default();
    let encrypted = plan.protection == crate::config::Protection::Encrypted;
    let (secagg_plan, he_committee) = if encrypted {
        (Vec::new(), opening)
    } else {
        (opening, Vec::new())
    };
    pb::TrainTask {
        round: plan.round,
        federation: plan.federation.clone(),
        model_spec_json: spec.model_spec_json.clone(),
        global: Some(pb::WeightsRef {
            version: plan.global.version,
            length: plan.global.length,
            sha256: plan.global.sha256.to_vec(),
        }),
        protection: protection_to_pb(plan.protection) as i32,
        deadlines: Some(pb::Deadlines {
            keys_unix_ms: plan.deadlines.keys_unix_ms,
            upload_unix_ms: plan.deadlines.upload_unix_ms,
            unmask_unix_ms: plan.deadlines.unmask_unix_ms,
        }),
        local_epochs: spec.local_epochs,
        learning_rate: spec.learning_rate_at(plan.global.version),
        clip: plan.clip(),
        fedprox_mu: spec.fedprox_mu,
        max_weight: plan.max_weight(),
        round_seed: plan.seed.to_vec(),
        roster: plan.selected.clone(),
        secagg_plan,
        he_committee,
        purpose: match plan.purpose {
            crate::round::RoundPurpose::Train => pb::RoundPurpose::Train,
            crate::round::RoundPurpose::Evaluate => pb::RoundPurpose::Evaluate,
        } as i32,
        dp_noise_multiplier: plan.dp().map_or(0.0, |d| d.noise_multiplier),
        dp_min_contributors: u32::try_from(plan.min_participants).unwrap_or(u32::MAX),
    }
}

pub(crate) fn protection_to_pb(p: crate::config::Protection) -> pb::ProtectionMode {
    match p {
        crate::config::Protection::Plain => pb::ProtectionMode::Plain,
        crate::config::Protection::Masked => pb::ProtectionMode::Masked,
        crate::config::Protection::Encrypted => pb::ProtectionMode::Encrypted,
    }
}

fn step_to_pb(p: StepPhase) -> pb::SecAggPhase {
    match p {
        StepPhase::AdvertiseKeys => pb::SecAggPhase::AdvertiseKeys,
        StepPhase::ShareKeys => pb::SecAggPhase::ShareKeys,
        StepPhase::MaskedInput => pb::SecAggPhase::MaskedInput,
        StepPhase::Unmask => pb::SecAggPhase::Unmask,
        StepPhase::HeCommit => pb::SecAggPhase::HeCommit,
        StepPhase::HeReveal => pb::SecAggPhase::HeReveal,
        StepPhase::HeDeal => pb::SecAggPhase::HeDeal,
        StepPhase::HeInput => pb::SecAggPhase::HeInput,
        StepPhase::HeDecrypt => pb::SecAggPhase::HeDecrypt,
    }
}

fn step_from_pb(p: i32) -> Result<StepPhase, Status> {
    match pb::SecAggPhase::try_from(p) {
        Ok(pb::SecAggPhase::AdvertiseKeys) => Ok(StepPhase::AdvertiseKeys),
        Ok(pb::SecAggPhase::ShareKeys) => Ok(StepPhase::ShareKeys),
        Ok(pb::SecAggPhase::Unmask) => Ok(StepPhase::Unmask),
        Ok(pb::SecAggPhase::HeCommit) => Ok(StepPhase::HeCommit),
        Ok(pb::SecAggPhase::HeReveal) => Ok(StepPhase::HeReveal),
        Ok(pb::SecAggPhase::HeDeal) => Ok(StepPhase::HeDeal),
        _ => Err(Status::invalid_argument(format!(
            "phase {p} takes no protocol message"
        ))),
    }
}

fn task_to_pb(task: Task) -> pb::RoundTask {
    let task = match task {
        Task::Idle { reason } => round_task::Task::Idle(pb::Idle {
            retry_after_ms: 0,
            reason: reason.into(),
        }),
        Task::Train { plan, secagg_plan } => {
            round_task::Task::Train(train_task(&plan, secagg_plan))
        }
        Task::Step {
            round,
            phase,
            payload,
        } => round_task::Task::Step(pb::ProtocolStep {
            round,
            phase: step_to_pb(phase) as i32,
            payload: payload.as_ref().clone(),
        }),
        Task::Done { final_weights } => round_task::Task::Done(pb::FederationDone {
            final_version: final_weights.version,
            final_weights: Some(pb::WeightsRef {
                version: final_weights.version,
                length: final_weights.length,
                sha256: final_weights.sha256.to_vec(),
            }),
        }),
    };
    pb::RoundTask { task: Some(task) }
}

/// Zero-copy view of shared weight bytes for chunked downloads.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Federation for FederationService {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let req = request.into_inner();
        let now = now_ms();
        let participant_id = self
            .call(move |hub| hub.enroll(&req.token, &req.public_key, &req.site_label, now))
            .await?;
        Ok(Response::new(pb::EnrollResponse { participant_id }))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let mut req = request.into_inner();
        let auth = req.auth.take();
        let participant = self
            .authenticate(proto::method::JOIN, String::new(), 0, auth, req.clone())
            .await?;
        let spec = self
            .call(move |hub| hub.join(&participant, &req.tag).cloned())
            .await?;
        Ok(Response::new(pb::JoinResponse {
            federation: spec.name,
            protection: protection_to_pb(spec.protection) as i32,
            coordinator_key: self.coordinator_key.to_vec(),
            dp_noise_multiplier: spec.dp.as_ref().map_or(0.0, |d| d.noise_multiplier),
            dp_delta: spec.dp.as_ref().map_or(0.0, |d| d.delta),
            dp_max_epsilon: spec.dp.as_ref().and_then(|d| d.max_epsilon).unwrap_or(0.0),
            model_spec_json: spec.model_spec_json,
        }))
    }

    async fn get_task(
        &self,
        request: Request<pb::TaskRequest>,
    ) -> Result<Response<pb::RoundTask>, Status> {
        let mut req = request.into_inner();
        let auth = req.auth.take();
        let participant = self
            .authenticate(
                proto::method::GET_TASK,
                req.federation.clone(),
                0,
                auth,
                req.clone(),
            )
            .await?;
        let long_poll = self.hub.lock().map(|h| h.long_poll_ms()).unwrap_or(0);
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(u64::from(req.wait_ms.min(long_poll)));
        let mut changes = self.changes.subscribe();
        let mut stopping = self.stopping.clone();
        loop {
            changes.mark_unchanged();
            let (p, f) = (participant.clone(), req.federation.clone());
            let task = self.call(move |hub| hub.task(&p, &f, now_ms())).await?;
            let idle = matches!(task, Task::Idle { .. });
            if !idle || tokio::time::Instant::now() >= deadline || *stopping.borrow() {
                if let Task::Step { payload, .. } = &task {
                    self.hub
                        .lock()
                        .map(|h| h.metrics().bytes_out(payload.len()))
                        .ok();
                }
                return Ok(Response::new(task_to_pb(task)));
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = stopping.changed() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn submit_protocol(
        &self,
        request: Request<pb::ProtocolSubmission>,
    ) -> Result<Response<pb::SubmitReceipt>, Status> {
        let mut req = request.into_inner();
        let auth = req.auth.take();
        let phase = step_from_pb(req.phase)?;
        let participant = self
            .authenticate(
                proto::method::SUBMIT_PROTOCOL,
                req.federation.clone(),
                req.round,
                auth,
                req.clone(),
            )
            .await?;
        let (round, len) = (req.round, req.payload.len() as u64);
        self.call(move |hub| {
            hub.submit_protocol(
                &participant,
                &req.federation,
                req.round,
                phase,
                &req.payload,
                now_ms(),
            )
        })
        .await?;
        Ok(Response::new(pb::SubmitReceipt {
            round,
            bytes_received: len,
        }))
    }

    async fn upload_update(
        &self,
        request: Request<Streaming<pb::UploadChunk>>,
    ) -> Result<Response<pb::SubmitReceipt>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty upload stream"))?;
        let Some(upload_chunk::Part::Header(mut header)) = first.part else {
            return Err(Status::invalid_argument(
                "an upload must start with its header",
            ));
        };
        let auth = header.auth.take();
        let participant = self
            .authenticate(
                proto::method::UPLOAD_UPDATE,
                header.federation.clone(),
                header.round,
                auth,
                header.clone(),
            )
            .await?;
        let kind = match pb::ElementType::try_from(header.element_type) {
            Ok(pb::ElementType::F32) => UploadKind::Plain,
            Ok(pb::ElementType::Masked) => UploadKind::Masked,
            Ok(pb::ElementType::Ciphertext) => UploadKind::Ciphertext,
            Ok(pb::ElementType::PartialDecryption) => UploadKind::PartialDecryption,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "unknown element type {}",
                    header.element_type
                )));
            }
        };
        let (p, f, round) = (participant.clone(), header.federation.clone(), header.round);
        let slot = self
            .call(move |hub| hub.admit_upload(&p, &f, round, kind))
            .await?;
        let mut data = Reassembly::new(
            header.total_bytes,
            &header.sha256,
            proto::MAX_VECTOR_BYTES,
            slot.expected_bytes,
        )
        .map_err(|e| status_of(&e.into()))?;
        // Memory and concurrency caps (`[limits]`): held until this call returns.
        let until_deadline = Duration::from_millis(slot.deadline_unix_ms.saturating_sub(now_ms()));
        let _pass = self
            .uploads
            .enter(
                &participant,
                &header.federation,
                header.total_bytes,
                until_deadline,
            )
            .await?;
        let deadline = tokio::time::Instant::now() + until_deadline;
        let idle = self.uploads.idle;
        loop {
            let next = tokio::time::timeout(idle, stream.message());
            let chunk = match tokio::time::timeout_at(deadline, next).await {
                Err(_) => {
                    return Err(Status::deadline_exceeded(
                        "the round's upload deadline passed before the upload completed",
                    ));
                }
                Ok(Err(_)) => {
                    return Err(Status::deadline_exceeded(format!(
                        "no upload data for {} s (limits.upload_idle_timeout_s)",
                        idle.as_secs()
                    )));
                }
                Ok(Ok(next)) => next?,
            };
            let Some(chunk) = chunk else { break };
            match chunk.part {
                Some(upload_chunk::Part::Data(bytes)) => {
                    data.push(&bytes).map_err(|e| status_of(&e.into()))?
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "only data chunks may follow the header",
                    ));
                }
            }
        }
        let bytes = data.finish().map_err(|e| status_of(&e.into()))?;
        let len = bytes.len() as u64;
        debug!(participant = %participant, bytes = len, "upload complete");
        let samples = header.sample_count;
        self.call(move |hub| {
            let meta = crate::hub::UploadMeta {
                round,
                kind,
                samples,
            };
            hub.accept_upload(&participant, &header.federation, meta, &bytes, now_ms())
        })
        .await?;
        Ok(Response::new(pb::SubmitReceipt {
            round,
            bytes_received: len,
        }))
    }

    type DownloadWeightsStream = ChunkStream;

    async fn download_weights(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let mut req = request.into_inner();
        let auth = req.auth.take();
        let participant = self
            .authenticate(
                proto::method::DOWNLOAD_WEIGHTS,
                req.federation.clone(),
                0,
                auth,
                req.clone(),
            )
            .await?;
        let (header, bytes) = if req.aggregate_round != 0 {
            let round = req.aggregate_round;
            let bytes = self
                .call(move |hub| hub.aggregate(&participant, &req.federation, round))
                .await?;
            let header = pb::DownloadHeader {
                weights: None,
                aggregate_bytes: bytes.len() as u64,
                aggregate_sha256: proto::chunk::sha256(&bytes).to_vec(),
            };
            (header, bytes)
        } else {
            let (reference, bytes) = self
                .call(move |hub| hub.weights(&participant, &req.federation, req.version))
                .await?;
            let header = pb::DownloadHeader {
                weights: Some(pb::WeightsRef {
                    version: reference.version,
                    length: reference.length,
                    sha256: reference.sha256.to_vec(),
                }),
                ..Default::default()
            };
            (header, bytes)
        };
        if let Ok(hub) = self.hub.lock() {
            hub.metrics().bytes_out(bytes.len());
        }
        let shared = Bytes::from_owner(SharedBytes(bytes));
        let header = pb::DownloadChunk {
            part: Some(pb::download_chunk::Part::Header(header)),
        };
        let chunks = proto::chunk::split(shared).map(|data| {
            Ok(pb::DownloadChunk {
                part: Some(pb::download_chunk::Part::Data(data)),
            })
        });
        let stream = tokio_stream::iter(std::iter::once(Ok(header)).chain(chunks));
        Ok(Response::new(Box::pin(stream)))
    }
}
