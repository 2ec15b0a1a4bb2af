//! The tonic shell of the registry: checks the operator token, runs [`Registry`] calls on
//! blocking threads, converts to proto. Registry errors become statuses in [`status_of`] only.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use proto::registry::registry_server::Registry as RegistryRpc;
use proto::registry::{self as pb, export_chunk};
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::{
    AliasRecord, ModelRef, ModelSpec, Registry, RegistryError, VersionDamage, VersionManifest,
};
use crate::hub::Hub;

/// The one place registry errors become gRPC statuses.
pub fn status_of(error: &RegistryError) -> Status {
    use RegistryError as E;
    let code = match error {
        E::BadOperatorToken | E::NoOperatorToken => Code::Unauthenticated,
        E::SpecSyntax(_) | E::Spec { .. } | E::Request { .. } => Code::InvalidArgument,
        E::AlreadyPublished(_) | E::TagTaken { .. } | E::NameTaken(_) => Code::AlreadyExists,
        E::UnknownModel(_) | E::UnknownVersion { .. } | E::UnknownAlias { .. } => Code::NotFound,
        E::NothingToRollBack { .. } => Code::FailedPrecondition,
        E::Tampered { .. } | E::BadManifest(_) => Code::DataLoss,
        E::Coordinator(e) => return crate::grpc::status_of(e),
        E::Model(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %error, "internal registry error");
        return Status::internal("internal coordinator error");
    }
    Status::new(code, error.to_string())
}

/// Runs `f` on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("registry task failed: {e}")))?
        .map_err(|e| status_of(&e))
}

/// The versions `model`'s federation has committed, oldest first.
fn committed_versions(
    hub: &Mutex<Hub>,
    model: &str,
) -> Result<Vec<crate::store::ModelVersion>, RegistryError> {
    Ok(hub
        .lock()
        .map_err(|_| crate::CoordinatorError::Store("coordinator state poisoned".into()))?
        .versions(model)?)
}

/// Signs manifests for every version `model`'s federation has committed since the last call.
pub(crate) fn sync(
    registry: &Registry,
    hub: &Mutex<Hub>,
    model: &str,
) -> Result<usize, RegistryError> {
    registry.model(model)?;
    registry.sync(model, &committed_versions(hub, model)?)
}

/// [`sync`] before a read: a failure to sign new versions is logged, and the read answers
/// from the manifests already signed instead of failing with it.
pub(crate) fn sync_before_read(registry: &Registry, hub: &Mutex<Hub>, model: &str) {
    if let Err(e) = sync(registry, hub, model) {
        tracing::warn!(model, error = %e, "signing new version manifests failed; answering from those already signed");
    }
}

/// Signs the manifests of every published model's settled versions: the coordinator's tick
/// calls it whenever rounds move, so a version is signed as soon as it and its federated
/// evaluation are committed.
pub(crate) fn sync_all(registry: &Registry, hub: &Mutex<Hub>) -> Result<(), RegistryError> {
    for model in registry.models()? {
        sync(registry, hub, &model.spec.name)?;
    }
    Ok(())
}

/// Opens the registry in the hub's storage and adds the federations of published models to
/// `hub`.
pub async fn attach(hub: Hub) -> Result<(Hub, Arc<Registry>), crate::CoordinatorError> {
    tokio::task::spawn_blocking(move || {
        let mut hub = hub;
        let registry = Registry::in_storage(hub.storage())
            .and_then(|r| r.restore(&mut hub, crate::grpc::now_ms()).map(|()| r))
            .map_err(|e| crate::CoordinatorError::Config(format!("model registry: {e}")))?;
        Ok((hub, Arc::new(registry)))
    })
    .await
    .map_err(|e| crate::CoordinatorError::Store(format!("opening the registry: {e}")))?
}

/// The `gridfed.registry.v1.Registry` service.
#[derive(Clone)]
pub struct RegistryService {
    hub: Arc<Mutex<Hub>>,
    registry: Arc<Registry>,
    operator_tokens: Arc<Vec<String>>,
}

impl RegistryService {
    pub fn new(
        hub: Arc<Mutex<Hub>>,
        registry: Arc<Registry>,
        operator_tokens: Vec<String>,
    ) -> Self {
        Self {
            hub,
            registry,
            operator_tokens: Arc::new(operator_tokens),
        }
    }

    /// `authorization: Bearer <operator token>`, compared in constant time.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.operator_tokens.is_empty() {
            return Err(status_of(&RegistryError::NoOperatorToken));
        }
        let ok = crate::auth::bearer_accepted(request.metadata(), &self.operator_tokens);
        if ok {
            Ok(())
        } else {
            tracing::warn!("registry call with a wrong or missing operator token");
            Err(status_of(&RegistryError::BadOperatorToken))
        }
    }

    /// Parses a model reference field.
    fn model_ref(text: &str) -> Result<ModelRef, Status> {
        text.parse().map_err(|e| status_of(&e))
    }
}

fn alias_info(model: &str, a: &AliasRecord) -> pb::AliasInfo {
    pb::AliasInfo {
        model: model.to_string(),
        alias: a.alias.clone(),
        version: a.version,
        previous: a.previous.clone(),
        history_json: serde_json::to_string(&a.history).unwrap_or_default(),
    }
}

fn version_info(
    m: &VersionManifest,
    aliases: &[AliasRecord],
    damage: &[VersionDamage],
) -> Result<pb::VersionInfo, RegistryError> {
    let version = m.content.version;
    Ok(pb::VersionInfo {
        manifest_json: serde_json::to_string(m)?,
        aliases: aliases
            .iter()
            .filter(|a| a.version == version)
            .map(|a| a.alias.clone())
            .collect(),
        damage: damage
            .iter()
            .find(|d| d.version == version)
            .map(|d| d.reason.clone())
            .unwrap_or_default(),
    })
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

#[tonic::async_trait]
impl RegistryRpc for RegistryService {
    async fn publish_spec(
        &self,
        request: Request<pb::PublishSpecRequest>,
    ) -> Result<Response<pb::PublishSpecResponse>, Status> {
        self.authorize(&request)?;
        let text = request.into_inner().spec_toml;
        if text.len() > 64 * 1024 {
            return Err(status_of(&RegistryError::Request {
                field: "spec_toml",
                reason: "longer than 64 KiB".into(),
            }));
        }
        let (hub, registry) = (self.hub.clone(), self.registry.clone());
        let model = blocking(move || {
            let spec = ModelSpec::from_toml(&text)?;
            let mut hub = hub
                .lock()
                .map_err(|_| crate::CoordinatorError::Store("coordinator state poisoned".into()))?;
            registry.publish(spec, &mut hub, crate::grpc::now_ms())
        })
        .await?;
        tracing::info!(model = %model.spec.name, tag = %model.spec.tag(), "model published");
        Ok(Response::new(pb::PublishSpecResponse {
            model: model.spec.name.clone(),
            tag: model.spec.tag(),
            spec_json: serde_json::to_string(&model.spec).unwrap_or_default(),
            parameters: model.spec.forecaster_config().num_params() as u64,
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        self.authorize(&request)?;
        let (hub, registry) = (self.hub.clone(), self.registry.clone());
        let models = blocking(move || {
            let mut out = Vec::new();
            for m in registry.models()? {
                sync_before_read(&registry, &hub, &m.spec.name);
                out.push(pb::ModelInfo {
                    name: m.spec.name.clone(),
                    tag: m.spec.tag(),
                    spec_json: serde_json::to_string(&m.spec)?,
                    versions: registry.versions(&m.spec.name)?.len() as u64,
                    published_unix_ms: m.published_unix_ms,
                });
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        self.authorize(&request)?;
        let model = request.into_inner().model;
        let (hub, registry) = (self.hub.clone(), self.registry.clone());
        let response = blocking(move || {
            sync_before_read(&registry, &hub, &model);
            let aliases = registry.aliases(&model)?;
            let damage = registry.damage(&model)?;
            let versions = registry
                .versions(&model)?
                .iter()
                .map(|m| version_info(m, &aliases, &damage))
                .collect::<Result<_, _>>()?;
            Ok(pb::ListVersionsResponse {
                aliases: aliases.iter().map(|a| alias_info(&model, a)).collect(),
                model,
                versions,
                coordinator_key: registry.public_key().to_vec(),
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn show_version(
        &self,
        request: Request<pb::ShowVersionRequest>,
    ) -> Result<Response<pb::VersionInfo>, Status> {
        self.authorize(&request)?;
        let reference = Self::model_ref(&request.into_inner().model_ref)?;
        let (hub, registry) = (self.hub.clone(), self.registry.clone());
        let info = blocking(move || {
            sync_before_read(&registry, &hub, &reference.model);
            let manifest = registry.resolve(&reference)?;
            version_info(
                &manifest,
                &registry.aliases(&reference.model)?,
                &registry.damage(&reference.model)?,
            )
        })
        .await?;
        Ok(Response::new(info))
    }

    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::AliasInfo>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let reference = Self::model_ref(&req.model_ref)?;
        let (hub, registry) = (self.hub.clone(), self.registry.clone());
        let record = blocking(move || {
            sync(&registry, &hub, &reference.model)?;
            let record = registry.promote(&reference, &req.alias, crate::clock::wall_ms())?;
            Ok(alias_info(&reference.model, &record))
        })
        .await?;
        tracing::info!(model = %record.model, alias = %record.alias, version = record.version, "alias promoted");
        Ok(Response::new(record))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::AliasInfo>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let registry = self.registry.clone();
        let record = blocking(move || {
            let record = registry.rollback(&req.model, &req.alias, crate::clock::wall_ms())?;
            Ok(alias_info(&req.model, &record))
        })
        .await?;
        tracing::info!(model = %record.model, alias = %record.alias, version = record.version, "alias rolled back");
        Ok(Response::new(record))
    }

    type ExportVersionStream = ExportStream;

    async fn export_version(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportVersionStream>, Status> {
        self.authorize(&request)?;
        let reference = Self::model_ref(&request.into_inner().model_ref)?;
        let (hub, registry) = (self.hub.clone(), self.registry.clone());
        let (manifest, bytes, key) = blocking(move || {
            sync_before_read(&registry, &hub, &reference.model);
            let manifest = registry.resolve(&reference)?;
            let weights = registry.load_weights(&manifest)?;
            Ok((
                manifest,
                proto::chunk::f32_to_bytes(&weights),
                registry.public_key(),
            ))
        })
        .await?;
        let header = pb::ExportChunk {
            part: Some(export_chunk::Part::Header(pb::ExportHeader {
                manifest_json: serde_json::to_string(&manifest)
                    .map_err(|e| status_of(&RegistryError::from(e)))?,
                length: bytes.len() as u64,
                sha256: proto::chunk::sha256(&bytes).to_vec(),
                coordinator_key: key.to_vec(),
            })),
        };
        let chunks = proto::chunk::split(bytes.into()).map(|data| {
            Ok(pb::ExportChunk {
                part: Some(export_chunk::Part::Data(data)),
            })
        });
        let stream = tokio_stream::iter(std::iter::once(Ok(header)).chain(chunks));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn repair_version(
        &self,
        request: Request<Streaming<pb::RepairChunk>>,
    ) -> Result<Response<pb::RepairResponse>, Status> {
        self.authorize(&request)?;
        let mut stream = request.into_inner();
        let bad = |reason: &str| {
            status_of(&RegistryError::Request {
                field: "part",
                reason: reason.into(),
            })
        };
        let Some(pb::RepairChunk {
            part: Some(pb::repair_chunk::Part::Header(header)),
        }) = stream.message().await?
        else {
            return Err(bad("the stream must start with a header"));
        };
        let mut reassembly = proto::chunk::Reassembly::new(
            header.length,
            &header.sha256,
            proto::MAX_VECTOR_BYTES,
            None,
        )
        .map_err(|e| crate::grpc::status_of(&e.into()))?;
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(pb::repair_chunk::Part::Data(data)) => reassembly
                    .push(&data)
                    .map_err(|e| crate::grpc::status_of(&e.into()))?,
                _ => return Err(bad("only data may follow the header")),
            }
        }
        let bytes = reassembly
            .finish()
            .map_err(|e| crate::grpc::status_of(&e.into()))?;
        let (hub, registry, model) = (self.hub.clone(), self.registry.clone(), header.model);
        let response = blocking(move || {
            let versions = registry.repair(&model, &committed_versions(&hub, &model)?, &bytes)?;
            let signed = sync(&registry, &hub, &model)? as u64;
            Ok(pb::RepairResponse {
                model,
                versions,
                signed,
            })
        })
        .await?;
        tracing::info!(model = %response.model, versions = ?response.versions, "versions repaired");
        Ok(Response::new(response))
    }
}
