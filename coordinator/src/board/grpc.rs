//! The board's half of the forecast service: proto <-> domain, signed publishing, queries, and
//! the one place [`BoardError`]s become statuses.

use std::sync::{Arc, Mutex};

use datasets::Target;
use proto::auth::payload_digest;
use proto::forecast as pb;
use tonic::{Code, Status};

use super::store::Published;
use super::{Board, BoardError, BoardQuery, RegisteredVersion, SectorTotal, SiteForecast};
use crate::hub::Hub;
use crate::registry::grpc::{status_of as registry_status, sync_before_read};
use crate::registry::{ModelRef, Registry, RegistryError};

/// The request's fault is `InvalidArgument`; a model or manifest id the registry lacks
/// `NotFound`; an older issue than the stored one `FailedPrecondition`; the per-participant site cap `ResourceExhausted`; storage ours.
pub fn status_of(error: &BoardError) -> Status {
    let code = match error {
        BoardError::Invalid { .. } => Code::InvalidArgument,
        BoardError::Stale { .. } => Code::FailedPrecondition,
        BoardError::TooManySites(_) => Code::ResourceExhausted,
        BoardError::UnknownVersion { .. } => Code::NotFound,
        BoardError::Store(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %error, "board store error");
        return Status::internal("internal coordinator error");
    }
    Status::new(code, error.to_string())
}

fn now_unix_s() -> i64 {
    (crate::clock::wall_ms() / 1000) as i64
}

fn parse_target(field: &str, value: &str) -> Result<Target, BoardError> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
        BoardError::Invalid {
            field: field.into(),
            reason: format!("`{value}`; expected load or pv"),
        }
    })
}

fn target_name(target: Target) -> String {
    target.as_str().to_string()
}

/// The domain forecast of a published message, for `participant` (the verified signer).
pub fn domain_forecast(
    message: pb::SiteForecast,
    participant: &str,
) -> Result<SiteForecast, BoardError> {
    Ok(SiteForecast {
        participant_id: participant.to_string(),
        target: parse_target("target", &message.target)?,
        site: message.site,
        sector: message.sector,
        model: message.model,
        version_id: message.version_id,
        issued_unix_s: message.issued_unix_s,
        step_s: message.step_s,
        timestamps_unix_s: message.timestamps_unix_s,
        p10_kw: message.p10_kw,
        p50_kw: message.p50_kw,
        p90_kw: message.p90_kw,
    })
}

pub fn proto_forecast(f: SiteForecast) -> pb::SiteForecast {
    pb::SiteForecast {
        participant_id: f.participant_id,
        site: f.site,
        sector: f.sector,
        target: target_name(f.target),
        model: f.model,
        version_id: f.version_id,
        issued_unix_s: f.issued_unix_s,
        step_s: f.step_s,
        timestamps_unix_s: f.timestamps_unix_s,
        p10_kw: f.p10_kw,
        p50_kw: f.p50_kw,
        p90_kw: f.p90_kw,
    }
}

/// Checks `forecast` against the registered version its `version_id` names (the registry is
/// synced first, so a version committed a moment ago is known).
pub fn check_registered(
    hub: &Mutex<Hub>,
    registry: &Registry,
    forecast: &SiteForecast,
) -> Result<(), Status> {
    let reference: ModelRef = forecast.model.parse().map_err(|e| {
        status_of(&BoardError::Invalid {
            field: "model".into(),
            reason: format!("{e}"),
        })
    })?;
    sync_before_read(registry, hub, &reference.model);
    let manifests = match registry.versions(&reference.model) {
        Ok(manifests) => manifests,
        Err(RegistryError::UnknownModel(name)) => {
            return Err(status_of(&BoardError::UnknownVersion {
                field: "model",
                reason: format!("the registry has no model `{name}`"),
            }));
        }
        Err(e) => return Err(registry_status(&e)),
    };
    let manifest = manifests
        .iter()
        .find(|m| m.id == forecast.version_id)
        .ok_or_else(|| {
            status_of(&BoardError::UnknownVersion {
                field: "version_id",
                reason: format!(
                    "model `{}` has no version with manifest id `{}`",
                    reference.model, forecast.version_id
                ),
            })
        })?;
    let c = &manifest.content;
    forecast
        .check_version(&RegisteredVersion {
            model: &c.model,
            version: c.version,
            target: c.spec.target,
            sector: c.spec.sector,
        })
        .map_err(|e| status_of(&e))
}

/// Verifies the request's signature (method `PublishSiteForecast`, federation "", round 0)
/// against the enrolled key, checks the forecast and the model version it declares against
/// the registry, then stores it as the signer's.
pub fn publish(
    hub: &Mutex<Hub>,
    registry: &Registry,
    board: &Board,
    mut request: pb::PublishSiteForecastRequest,
) -> Result<pb::PublishSiteForecastResponse, Status> {
    let auth = request.auth.take();
    let digest = payload_digest(&request);
    let participant = {
        let mut hub = hub
            .lock()
            .map_err(|_| Status::internal("coordinator state poisoned"))?;
        hub.authenticate(
            proto::method::PUBLISH_SITE_FORECAST,
            "",
            0,
            auth.as_ref(),
            digest,
        )
        .map_err(|e| crate::grpc::status_of(&e))?
    };
    let message = request
        .forecast
        .ok_or_else(|| Status::invalid_argument("forecast: missing"))?;
    if !message.participant_id.is_empty() && message.participant_id != participant {
        return Err(Status::permission_denied(format!(
            "forecast.participant_id: `{}` signed this request; it may publish only its own sites, not `{}`'s",
            participant, message.participant_id
        )));
    }
    let forecast = domain_forecast(message, &participant).map_err(|e| status_of(&e))?;
    let now = now_unix_s();
    // Malformed fields are named before the registry is consulted (the store validates again).
    forecast.validate(now).map_err(|e| status_of(&e))?;
    check_registered(hub, registry, &forecast)?;
    let outcome = board.publish(&forecast, now).map_err(|e| status_of(&e))?;
    tracing::info!(participant = %participant, site = %forecast.site, sector = %forecast.sector,
        model = %forecast.model, version_id = %forecast.version_id,
        steps = forecast.timestamps_unix_s.len(), "site forecast published");
    Ok(pb::PublishSiteForecastResponse {
        participant_id: participant,
        replaced: outcome == Published::Replaced,
    })
}

/// The domain query of a request (empty strings match all).
pub fn domain_query(request: &pb::QueryBoardRequest) -> Result<BoardQuery, BoardError> {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let query = BoardQuery {
        sector: some(&request.sector),
        site: some(&request.site),
        participant_id: some(&request.participant_id),
        target: match request.target.as_str() {
            "" => None,
            t => Some(parse_target("target", t)?),
        },
        from_unix_s: request.from_unix_s,
        to_unix_s: request.to_unix_s,
    };
    query.validate()?;
    if request.total && (query.sector.is_none() || query.target.is_none()) {
        return Err(BoardError::Invalid {
            field: "total".into(),
            reason: "a sector total needs sector and target (load and pv do not add)".into(),
        });
    }
    Ok(query)
}

/// Who reads the board: a bearer of a reader (or operator) token sees every site; an
/// enrolled participant, by signature, only its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardReader {
    Token,
    Participant(String),
}

const WHO_MAY_READ: &str = "the forecast board is read with a board reader or operator token \
     (`authorization: Bearer <token>`; coordinator `board_reader_tokens`), or by an enrolled \
     participant for its own sites (a signed `auth`)";

/// The participant that signed `request` (method QueryBoard, federation "", round 0); a
/// request with neither a token nor a signature is refused saying who may read.
pub fn participant_reader(
    hub: Option<&Mutex<Hub>>,
    request: &pb::QueryBoardRequest,
) -> Result<BoardReader, Status> {
    let Some(auth) = request.auth.as_ref() else {
        tracing::warn!("board query without a reader token or a signature");
        return Err(Status::unauthenticated(WHO_MAY_READ));
    };
    let Some(hub) = hub else {
        return Err(Status::failed_precondition(
            "this is a read-only forecast replica: send participants' signed board queries to \
             the coordinator (it holds their keys), or read here with a board reader token",
        ));
    };
    let mut unsigned = request.clone();
    unsigned.auth = None;
    let digest = payload_digest(&unsigned);
    let participant = hub
        .lock()
        .map_err(|_| Status::internal("coordinator state poisoned"))?
        .authenticate(proto::method::QUERY_BOARD, "", 0, Some(auth), digest)
        .map_err(|e| crate::grpc::status_of(&e))?;
    Ok(BoardReader::Participant(participant))
}

pub fn query(
    board: &Arc<Board>,
    reader: &BoardReader,
    mut request: pb::QueryBoardRequest,
) -> Result<pb::QueryBoardResponse, Status> {
    if let BoardReader::Participant(id) = reader {
        if !request.participant_id.is_empty() && request.participant_id != *id {
            return Err(Status::permission_denied(format!(
                "participant_id: `{id}` signed this query; a participant reads only its own \
                 forecasts, not `{}`'s (other sites need a board reader token)",
                request.participant_id
            )));
        }
        request.participant_id = id.clone();
    }
    let query = domain_query(&request).map_err(|e| status_of(&e))?;
    let forecasts = board.query(&query).map_err(|e| status_of(&e))?;
    if request.total {
        let t = SectorTotal::sum(&forecasts);
        return Ok(pb::QueryBoardResponse {
            forecasts: Vec::new(),
            total: Some(pb::SectorTotal {
                timestamps_unix_s: t.timestamps_unix_s,
                p50_kw: t.p50_kw,
                p10_bound_kw: t.p10_bound_kw,
                p90_bound_kw: t.p90_bound_kw,
                sites: t.sites,
            }),
        });
    }
    Ok(pb::QueryBoardResponse {
        forecasts: forecasts.into_iter().map(proto_forecast).collect(),
        total: None,
    })
}
