//! Forecasting the site with the registry's model and publishing the result to the board.
//!
//! The site fetches a registered version ([`fetch_model`]: signed `FetchModel`), checks it
//! before use ([`verify_fetched`]: the manifest's signature under the coordinator key the site
//! trusts, the weights against the signed SHA-256, the forecaster config against the serving
//! spec), forecasts from its own telemetry ([`forecast_site`], with the same request building
//! as `gridfed forecast`) and publishes p10/p50/p90 under the exact version it used
//! ([`publish_production_forecast`]). Only the fetch request and the forecast leave the site.

use std::sync::Arc;

use datasets::{RegularSeries, SiteMetadata};
use models::ForecasterConfig;
use models::manifest::{ServedManifest, SignedManifest};
use models::serving::{ForecastRequest, QuantileForecast, ServingModel, ServingSpec, origin_index};
use proto::chunk::Reassembly;
use proto::forecast::forecast_client::ForecastClient;
use proto::forecast::{
    FetchModelRequest, PublishSiteForecastResponse, SiteForecast, fetch_model_chunk,
};
use tonic::transport::Channel;

use crate::ParticipantError;
use crate::board::{BoardEntry, publish_site_forecast, site_forecast};
use crate::client::FederationLink;
use crate::config::DataConfig;

/// A verified model version, ready to forecast.
pub struct FetchedModel {
    /// What the coordinator signed (read from the signed bytes only).
    pub manifest: ServedManifest,
    /// The manifest id (SHA-256 of the signed content).
    pub id: String,
    pub model: ServingModel,
}

impl FetchedModel {
    /// `NAME@VERSION`: the exact reference of this version, which never moves (unlike an
    /// alias), as declared on the board.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.manifest.model, self.manifest.version)
    }
}

fn refused(reason: impl std::fmt::Display) -> ParticipantError {
    ParticipantError::UntrustedModel(reason.to_string())
}

/// Checks a fetched manifest (the coordinator's `VersionManifest` JSON) and weight bytes
/// under `coordinator_key`, then builds the model. Nothing unverified is used: the manifest is
/// read from its signed bytes, and the weights must match the signed digest and count.
pub fn verify_fetched(
    manifest_json: &str,
    weights: &[u8],
    coordinator_key: &[u8; 32],
) -> Result<FetchedModel, ParticipantError> {
    let signed: SignedManifest = serde_json::from_str(manifest_json)
        .map_err(|e| refused(format!("manifest_json is not a signed manifest: {e}")))?;
    let manifest = signed.served(coordinator_key).map_err(|e| {
        let id: String = signed.id.chars().take(12).collect();
        refused(format!("manifest {id}: {e}"))
    })?;
    let label = format!("{}@{}", manifest.model, manifest.version);
    manifest
        .weights
        .verify(weights)
        .map_err(|e| refused(format!("{label}: {e}")))?;
    let spec = ServingSpec::from_json(&manifest.serving_spec_json)
        .map_err(|e| refused(format!("{label}: serving spec: {e}")))?;
    let forecaster: ForecasterConfig = serde_json::from_str(&manifest.forecaster_json)
        .map_err(|e| refused(format!("{label}: forecaster config: {e}")))?;
    if forecaster != spec.architecture {
        return Err(refused(format!(
            "{label}: the forecaster config differs from the serving spec's architecture"
        )));
    }
    let parameters =
        proto::chunk::bytes_to_f32(weights).map_err(|e| refused(format!("{label}: {e}")))?;
    let model = ServingModel::new(spec, &parameters)
        .map_err(|e| refused(format!("{label}: cannot build the model: {e}")))?;
    Ok(FetchedModel {
        manifest,
        id: signed.id,
        model,
    })
}

/// Fetches the version `model` (`NAME`, `NAME@VERSION`, `NAME@ALIAS`, `NAME@<id prefix>`)
/// names and verifies it under `coordinator_key` (the key from `Join`).
pub async fn fetch_model(
    link: &FederationLink,
    channel: Channel,
    model: &str,
    coordinator_key: &[u8; 32],
) -> Result<FetchedModel, ParticipantError> {
    let mut request = FetchModelRequest {
        auth: None,
        model: model.to_string(),
    };
    request.auth = Some(link.authorize(proto::method::FETCH_MODEL, &request));
    link.send_log("FetchModel", &request);
    let mut stream = ForecastClient::new(channel)
        .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
        .fetch_model(request)
        .await?
        .into_inner();
    let Some(fetch_model_chunk::Part::Header(header)) =
        stream.message().await?.and_then(|c| c.part)
    else {
        return Err(ParticipantError::Protocol(
            "model fetch must start with a header".into(),
        ));
    };
    let mut data = Reassembly::new(header.length, &header.sha256, proto::MAX_VECTOR_BYTES, None)?;
    while let Some(chunk) = stream.message().await? {
        match chunk.part {
            Some(fetch_model_chunk::Part::Data(bytes)) => data.push(&bytes)?,
            _ => {
                return Err(ParticipantError::Protocol(
                    "only data chunks may follow the model header".into(),
                ));
            }
        }
    }
    let bytes = data.finish()?;
    let manifest_json = header.manifest_json;
    let key = *coordinator_key;
    // Building the network is CPU work; keep it off the async threads.
    tokio::task::spawn_blocking(move || verify_fetched(&manifest_json, &bytes, &key))
        .await
        .map_err(|e| ParticipantError::Protocol(format!("verifying the model: {e}")))?
}

/// Forecasts `horizon_steps` steps of the model's target for the site of `series` (on the
/// model's grid), from `at_unix_s` or the step after the last observation. The request carries
/// the history and covariates the model needs, built as `gridfed forecast` builds them.
pub fn forecast_site(
    fetched: &FetchedModel,
    series: &RegularSeries,
    site: &SiteMetadata,
    at_unix_s: Option<i64>,
    horizon_steps: usize,
) -> Result<QuantileForecast, ParticipantError> {
    let (_, request) = site_request(fetched.model.spec(), series, site, at_unix_s, horizon_steps)?;
    fetched.model.forecast(&request).map_err(serving)
}

/// The request `spec`'s model needs for the site of `series` from `at_unix_s` (default: the
/// step after the last observation), and the origin's grid index.
pub(crate) fn site_request(
    spec: &models::serving::ServingSpec,
    series: &RegularSeries,
    site: &SiteMetadata,
    at_unix_s: Option<i64>,
    horizon_steps: usize,
) -> Result<(usize, ForecastRequest), ParticipantError> {
    let origin = origin_index(series, spec.target, at_unix_s).map_err(serving)?;
    let request = ForecastRequest::from_series(
        series,
        site,
        spec.target,
        origin,
        horizon_steps,
        (spec.history_steps(false), spec.horizon),
    )
    .map_err(serving)?;
    Ok((origin, request))
}

pub(crate) fn serving(e: models::serving::ServingError) -> ParticipantError {
    ParticipantError::Forecast(e.to_string())
}

/// What [`publish_production_forecast`] published.
#[derive(Clone, Debug)]
pub struct PublishedForecast {
    pub entry: BoardEntry,
    pub forecast: SiteForecast,
    pub response: PublishSiteForecastResponse,
}

/// Reads the site's telemetry on the model's grid and forecasts it with `fetched`: the board
/// message under the site id and the site's sector, declaring the exact version used
/// ([`FetchedModel::reference`] and its manifest id). Issued at `now_unix_s`, or at the origin
/// for a forecast from a past origin (a backtest).
pub fn production_forecast(
    fetched: &FetchedModel,
    data: &DataConfig,
    at_unix_s: Option<i64>,
    horizon_steps: usize,
    now_unix_s: i64,
) -> Result<(BoardEntry, SiteForecast), ParticipantError> {
    let spec = fetched.model.spec();
    let (site, series) = crate::site::load_series(data, spec.resolution)?;
    let forecast = forecast_site(fetched, &series, &site, at_unix_s, horizon_steps)?;
    let first =
        forecast.timestamps_unix_s.first().copied().ok_or_else(|| {
            ParticipantError::Forecast("the model returned an empty forecast".into())
        })?;
    let entry = BoardEntry {
        site: site.site_id.clone(),
        sector: site.sector.as_str().to_string(),
        target: spec.target,
        model: fetched.reference(),
        version_id: fetched.id.clone(),
        issued_unix_s: now_unix_s.min(first),
        step_s: spec.resolution.seconds() as u32,
    };
    let message = site_forecast(&entry, &forecast)?;
    Ok((entry, message))
}

/// [`production_forecast`] (on a blocking thread), then publishes it signed by `link`.
pub async fn publish_production_forecast(
    link: &FederationLink,
    channel: Channel,
    fetched: Arc<FetchedModel>,
    data: DataConfig,
    at_unix_s: Option<i64>,
    horizon_steps: usize,
) -> Result<PublishedForecast, ParticipantError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(i64::MAX);
    let (entry, forecast) = tokio::task::spawn_blocking(move || {
        production_forecast(&fetched, &data, at_unix_s, horizon_steps, now)
    })
    .await
    .map_err(|e| ParticipantError::Forecast(format!("forecast task failed: {e}")))??;
    let response = publish_site_forecast(link, channel, forecast.clone()).await?;
    Ok(PublishedForecast {
        entry,
        forecast,
        response,
    })
}
