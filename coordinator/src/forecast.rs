//! The `gridfed.forecast.v1.Forecast` service: resolves a model reference through the
//! registry, loads the version once (signature and weight digest verified first), and answers
//! with `models::serving`. Proto <-> domain conversion and the status of every refusal live
//! here; the forecasting itself is the serving library's.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use datasets::{Normalization, Resolution, SiteKind, Target};
use models::serving::{
    Covariate, CovariateSeries, ForecastRequest, FutureCovariates, History, ServedSite,
    ServingError, ServingModel, ServingSpec,
};
use proto::forecast::{self as pb, forecast_server::Forecast};
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use crate::board::{self, Board};
use crate::hub::Hub;
use crate::registry::grpc::{status_of as registry_status, sync_before_read};
use crate::registry::{ModelRef, Registry, RegistryError, Selector, VersionManifest};

/// Loaded models kept at most; beyond it the cache starts over (versions are immutable, so a
/// reload only costs time).
const CACHE_LIMIT: usize = 32;

/// The one place serving errors become statuses: the request's fault is `InvalidArgument`,
/// except a history too short (`FailedPrecondition`: more data is needed, not other data), a
/// horizon beyond the model's (`OutOfRange`) and a version this build cannot serve.
pub fn status_of(error: &ServingError) -> Status {
    use ServingError as E;
    let code = match error {
        E::HistoryTooShort { .. } | E::FutureTooShort { .. } => Code::FailedPrecondition,
        E::HorizonOutOfRange { .. } => Code::OutOfRange,
        E::InvalidSpec(_) | E::Model(_) => Code::FailedPrecondition,
        _ => Code::InvalidArgument,
    };
    Status::new(code, error.to_string())
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchModelChunk, Status>> + Send>>;

/// `FetchModel`: authenticates an enrolled participant (method `FetchModel`, federation "",
/// round 0), resolves its reference (after a sync, so a version committed a moment ago is
/// found) and returns the manifest with the weight bytes, which the coordinator verifies
/// first: a tampered artifact is refused here (`DataLoss`), and participants check again.
pub fn fetch(
    hub: &Mutex<Hub>,
    registry: &Registry,
    mut request: pb::FetchModelRequest,
) -> Result<(VersionManifest, Vec<u8>), Status> {
    let auth = request.auth.take();
    let digest = proto::auth::payload_digest(&request);
    let participant = hub
        .lock()
        .map_err(|_| Status::internal("coordinator state poisoned"))?
        .authenticate(proto::method::FETCH_MODEL, "", 0, auth.as_ref(), digest)
        .map_err(|e| crate::grpc::status_of(&e))?;
    let reference = model_reference(&request.model)?;
    let load = || {
        sync_before_read(registry, hub, &reference.model);
        let manifest = registry.resolve(&reference)?;
        let weights = registry.load_weights(&manifest)?;
        Ok::<_, RegistryError>((manifest, proto::chunk::f32_to_bytes(&weights)))
    };
    let (manifest, bytes) = load().map_err(|e| registry_status(&e))?;
    tracing::info!(participant = %participant, model = %manifest.content.model,
        version = manifest.content.version, "model fetched");
    Ok((manifest, bytes))
}

#[derive(Clone)]
pub struct ForecastService {
    /// The coordinator's state; none on a read-only forecast replica.
    hub: Option<Arc<Mutex<Hub>>>,
    registry: Arc<Registry>,
    /// Loaded models by manifest id.
    cache: Arc<Mutex<HashMap<String, Arc<ServingModel>>>>,
    /// Published site forecasts (the forecast board).
    board: Arc<Board>,
    /// Bearer tokens that read every site on the board.
    board_readers: Arc<Vec<String>>,
}

impl ForecastService {
    pub fn new(
        hub: Arc<Mutex<Hub>>,
        registry: Arc<Registry>,
        board: Arc<Board>,
        board_readers: Vec<String>,
    ) -> Self {
        Self {
            hub: Some(hub),
            registry,
            cache: Arc::new(Mutex::new(HashMap::new())),
            board,
            board_readers: Arc::new(board_readers),
        }
    }

    /// A read-only forecast replica: forecasts and board queries from the shared storage, for
    /// versions the coordinator has signed; publishing and model downloads go to the
    /// coordinator.
    pub fn replica(registry: Arc<Registry>, board: Arc<Board>, board_readers: Vec<String>) -> Self {
        Self {
            hub: None,
            registry,
            cache: Arc::new(Mutex::new(HashMap::new())),
            board,
            board_readers: Arc::new(board_readers),
        }
    }

    fn coordinator(&self, call: &str) -> Result<Arc<Mutex<Hub>>, Status> {
        self.hub.clone().ok_or_else(|| {
            Status::failed_precondition(format!(
                "this is a read-only forecast replica: send {call} to the coordinator"
            ))
        })
    }
}

/// The version a reference names and its model, loaded and verified on first use.
fn load(
    registry: &Registry,
    hub: Option<&Mutex<Hub>>,
    cache: &Mutex<HashMap<String, Arc<ServingModel>>>,
    reference: &ModelRef,
) -> Result<(VersionManifest, Result<Arc<ServingModel>, ServingError>), RegistryError> {
    // An alias or version number that resolves names a manifest signed earlier (promotion
    // resolves too), so the hub's versions need not be read again on every request; anything
    // else (a new version, an id prefix that may match one not yet signed) syncs first. A
    // replica cannot sign: it serves what the coordinator has signed.
    let manifest = match (&reference.selector, registry.resolve(reference), hub) {
        (Selector::Alias(_) | Selector::Version(_), Ok(manifest), _) | (_, Ok(manifest), None) => {
            manifest
        }
        (_, Err(e), None) => return Err(e),
        (_, _, Some(hub)) => {
            sync_before_read(registry, hub, &reference.model);
            registry.resolve(reference)?
        }
    };
    if let Some(model) = cache.lock().ok().and_then(|c| c.get(&manifest.id).cloned()) {
        return Ok((manifest, Ok(model)));
    }
    let weights = registry.load_weights(&manifest)?;
    let model = ServingSpec::from_json(&manifest.content.serving_spec_json)
        .and_then(|spec| ServingModel::new(spec, &weights))
        .map(Arc::new);
    if let (Ok(model), Ok(mut cache)) = (&model, cache.lock()) {
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(manifest.id.clone(), model.clone());
    }
    Ok((manifest, model))
}

/// The `model` field of a request, parsed (every call of the service names one).
fn model_reference(model: &str) -> Result<ModelRef, Status> {
    if model.is_empty() {
        return Err(invalid(
            "model",
            "missing (NAME, NAME@VERSION or NAME@ALIAS)",
        ));
    }
    model.parse().map_err(|e| registry_status(&e))
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

/// The domain request; the model fixes target and grid (public for `gridfed bench forecast`,
/// which times the model on exactly what the service hands it).
pub fn domain_request(
    req: pb::ForecastRequest,
    target: Target,
    resolution: Resolution,
) -> Result<ForecastRequest, Status> {
    let site = req.site.ok_or_else(|| invalid("site", "missing"))?;
    let kind: SiteKind = serde_json::from_value(serde_json::Value::String(site.kind.clone()))
        .map_err(|_| {
            invalid(
                "site.kind",
                format!("`{}`; expected building, prosumer or pv_plant", site.kind),
            )
        })?;
    let history = req.history.unwrap_or_default();
    let future = req.future.unwrap_or_default();
    let site_normalization = match req.site_normalization {
        Some(n) if !(n.offset_kw.is_finite() && n.scale_kw.is_finite() && n.scale_kw > 0.0) => {
            return Err(invalid(
                "site_normalization",
                "offset_kw must be finite and scale_kw finite and positive",
            ));
        }
        Some(n) => Some(Normalization {
            offset_kw: n.offset_kw,
            scale_kw: n.scale_kw,
        }),
        None => None,
    };
    let absent_covariates = req
        .absent_covariates
        .iter()
        .map(|name| {
            Covariate::from_name(name).ok_or_else(|| {
                invalid(
                    "absent_covariates",
                    format!(
                        "`{name}` is not a covariate ({})",
                        Covariate::ALL.map(Covariate::name).join(", ")
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(ForecastRequest {
        site: ServedSite {
            kind,
            latitude: site.latitude,
            longitude: site.longitude,
            capacity_kw: site.capacity_kw,
            timezone: site.timezone,
        },
        target,
        resolution,
        origin_unix_s: req.origin_unix_s,
        horizon_steps: req.horizon_steps as usize,
        history: History {
            timestamps_unix_s: history.timestamps_unix_s,
            values_kw: history.values_kw,
        },
        future: FutureCovariates {
            timestamps_unix_s: future.timestamps_unix_s,
            covariates: future
                .covariates
                .into_iter()
                .map(|c| CovariateSeries {
                    name: c.name,
                    values: c.values,
                })
                .collect(),
        },
        site_normalization,
        absent_covariates,
    })
}

#[tonic::async_trait]
impl Forecast for ForecastService {
    async fn forecast(
        &self,
        request: Request<pb::ForecastRequest>,
    ) -> Result<Response<pb::ForecastResponse>, Status> {
        let req = request.into_inner();
        let reference = model_reference(&req.model)?;
        let (hub, registry, cache) = (self.hub.clone(), self.registry.clone(), self.cache.clone());
        // Lookup and forecast on one blocking thread: each hop to the pool and back costs
        // two thread wake-ups, a large share of a ~100 us forecast on a busy machine.
        let (manifest, forecast) = tokio::task::spawn_blocking(move || {
            let (manifest, model) = load(&registry, hub.as_deref(), &cache, &reference)
                .map_err(|e| registry_status(&e))?;
            let model = model.map_err(|e| {
                tracing::error!(model = %manifest.content.model, version = manifest.content.version,
                    error = %e, "model version cannot be served");
                status_of(&e)
            })?;
            let spec = model.spec();
            let request = domain_request(req, spec.target, spec.resolution)?;
            let forecast = model.forecast(&request).map_err(|e| status_of(&e))?;
            Ok::<_, Status>((manifest, forecast))
        })
        .await
        .map_err(|e| Status::internal(format!("forecast task failed: {e}")))??;
        Ok(Response::new(pb::ForecastResponse {
            model: manifest.content.model.clone(),
            version: manifest.content.version,
            version_id: manifest.id.clone(),
            timestamps_unix_s: forecast.timestamps_unix_s,
            quantiles: forecast
                .levels
                .iter()
                .zip(forecast.values_kw)
                .map(|(&level, values_kw)| pb::QuantileSeries { level, values_kw })
                .collect(),
            accuracy: manifest
                .content
                .federated_evaluation
                .iter()
                .next()
                .map(|(sector, e)| pb::FederatedAccuracy {
                    sector: sector.clone(),
                    sites: e.scores.sites,
                    nmae: e.scores.nmae,
                    nrmse: e.scores.nrmse,
                    coverage: e.scores.coverage,
                    skill: e.scores.skill,
                }),
            privacy: manifest
                .content
                .lineage
                .privacy
                .differential_privacy
                .as_ref()
                .map(|dp| pb::DifferentialPrivacy {
                    epsilon: dp.epsilon,
                    delta: dp.delta,
                    noise_multiplier: dp.noise_multiplier,
                    clip_l2: dp.clip_l2,
                    rounds: dp.rounds,
                }),
        }))
    }

    async fn publish_site_forecast(
        &self,
        request: Request<pb::PublishSiteForecastRequest>,
    ) -> Result<Response<pb::PublishSiteForecastResponse>, Status> {
        let hub = self.coordinator("PublishSiteForecast")?;
        let (registry, board) = (self.registry.clone(), self.board.clone());
        let request = request.into_inner();
        tokio::task::spawn_blocking(move || board::grpc::publish(&hub, &registry, &board, request))
            .await
            .map_err(|e| Status::internal(format!("board task failed: {e}")))?
            .map(Response::new)
    }

    type FetchModelStream = FetchStream;

    async fn fetch_model(
        &self,
        request: Request<pb::FetchModelRequest>,
    ) -> Result<Response<FetchStream>, Status> {
        let hub = self.coordinator("FetchModel")?;
        let registry = self.registry.clone();
        let request = request.into_inner();
        let (manifest, bytes) =
            tokio::task::spawn_blocking(move || fetch(&hub, &registry, request))
                .await
                .map_err(|e| Status::internal(format!("fetch task failed: {e}")))??;
        let header = pb::FetchModelChunk {
            part: Some(pb::fetch_model_chunk::Part::Header(pb::FetchModelHeader {
                manifest_json: serde_json::to_string(&manifest)
                    .map_err(|e| registry_status(&RegistryError::from(e)))?,
                length: bytes.len() as u64,
                sha256: proto::chunk::sha256(&bytes).to_vec(),
            })),
        };
        let chunks = proto::chunk::split(bytes.into()).map(|data| {
            Ok(pb::FetchModelChunk {
                part: Some(pb::fetch_model_chunk::Part::Data(data)),
            })
        });
        let stream = tokio_stream::iter(std::iter::once(Ok(header)).chain(chunks));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn describe_model(
        &self,
        request: Request<pb::DescribeModelRequest>,
    ) -> Result<Response<pb::DescribeModelResponse>, Status> {
        let reference = model_reference(&request.into_inner().model)?;
        let (hub, registry, cache) = (self.hub.clone(), self.registry.clone(), self.cache.clone());
        tokio::task::spawn_blocking(move || {
            let (manifest, model) = load(&registry, hub.as_deref(), &cache, &reference)
                .map_err(|e| registry_status(&e))?;
            let model = model.map_err(|e| status_of(&e))?;
            Ok(Response::new(describe(&manifest, model.spec())))
        })
        .await
        .map_err(|e| Status::internal(format!("describe task failed: {e}")))?
    }

    async fn query_board(
        &self,
        request: Request<pb::QueryBoardRequest>,
    ) -> Result<Response<pb::QueryBoardResponse>, Status> {
        let board = self.board.clone();
        let token_reader = crate::auth::bearer_accepted(request.metadata(), &self.board_readers);
        let hub = self.hub.clone();
        let request = request.into_inner();
        tokio::task::spawn_blocking(move || {
            let reader = if token_reader {
                board::grpc::BoardReader::Token
            } else {
                board::grpc::participant_reader(hub.as_deref(), &request)?
            };
            board::grpc::query(&board, &reader, request)
        })
        .await
        .map_err(|e| Status::internal(format!("board task failed: {e}")))?
        .map(Response::new)
    }
}

/// What a request for `manifest`'s version must carry.
fn describe(manifest: &VersionManifest, spec: &ServingSpec) -> pb::DescribeModelResponse {
    pb::DescribeModelResponse {
        model: manifest.content.model.clone(),
        version: manifest.content.version,
        version_id: manifest.id.clone(),
        target: spec.target.as_str().to_string(),
        step_seconds: spec.resolution.seconds(),
        horizon_steps: spec.horizon as u32,
        history_steps: spec.history_steps(false) as u32,
        history_steps_with_site_normalization: spec.history_steps(true) as u32,
        covariates: spec
            .covariates
            .iter()
            .map(|c| pb::CovariateSpec {
                name: c.name().to_string(),
                unit: c.unit().to_string(),
            })
            .collect(),
        quantile_levels: spec.architecture.quantiles.clone(),
    }
}

/// The proto request of `gridfed forecast` for the site of `series` from grid index `origin`
/// (see `models::serving::ForecastRequest::from_series`, which participants call directly).
pub fn request_from_series(
    model: &str,
    series: &datasets::RegularSeries,
    site: &datasets::SiteMetadata,
    target: Target,
    origin: usize,
    horizon_steps: u32,
    limits: (usize, usize),
) -> Result<pb::ForecastRequest, String> {
    let request =
        ForecastRequest::from_series(series, site, target, origin, horizon_steps as usize, limits)
            .map_err(|e| e.to_string())?;
    Ok(proto_request(model, request))
}

/// The wire form of a domain request (the inverse of [`domain_request`]).
pub fn proto_request(model: &str, r: ForecastRequest) -> pb::ForecastRequest {
    pb::ForecastRequest {
        model: model.to_string(),
        horizon_steps: r.horizon_steps as u32,
        site: Some(pb::Site {
            kind: serde_json::to_value(r.site.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            latitude: r.site.latitude,
            longitude: r.site.longitude,
            capacity_kw: r.site.capacity_kw,
            timezone: r.site.timezone,
        }),
        origin_unix_s: r.origin_unix_s,
        history: Some(pb::Series {
            timestamps_unix_s: r.history.timestamps_unix_s,
            values_kw: r.history.values_kw,
        }),
        future: Some(pb::Covariates {
            timestamps_unix_s: r.future.timestamps_unix_s,
            covariates: r
                .future
                .covariates
                .into_iter()
                .map(|c| pb::CovariateSeries {
                    name: c.name,
                    values: c.values,
                })
                .collect(),
        }),
        site_normalization: r.site_normalization.map(|n| pb::SiteNormalization {
            offset_kw: n.offset_kw,
            scale_kw: n.scale_kw,
        }),
        absent_covariates: r
            .absent_covariates
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
    }
}
