//! Publishing the site's own forecasts to the coordinator's forecast board. Only forecasts
//! leave (p10/p50/p90 per step, computed locally), signed with the site's identity through
//! [`FederationLink`], so the coordinator files them under this participant and a
//! [`crate::client::WireTap`] sees them like every other outgoing message.

use datasets::Target;
use models::serving::QuantileForecast;
use proto::forecast::forecast_client::ForecastClient;
use proto::forecast::{
    PublishSiteForecastRequest, PublishSiteForecastResponse, QueryBoardRequest, QueryBoardResponse,
    SiteForecast,
};
use tonic::transport::Channel;

use crate::ParticipantError;
use crate::client::FederationLink;

/// Where a forecast goes on the board and what computed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardEntry {
    pub site: String,
    pub sector: String,
    pub target: Target,
    /// Model reference and manifest id of the version that computed the forecast.
    pub model: String,
    pub version_id: String,
    pub issued_unix_s: i64,
    pub step_s: u32,
}

/// The board message of a locally computed `forecast`: its p10, p50 and p90 levels.
pub fn site_forecast(
    entry: &BoardEntry,
    forecast: &QuantileForecast,
) -> Result<SiteForecast, ParticipantError> {
    let level = |wanted: f32| -> Result<Vec<f64>, ParticipantError> {
        forecast
            .levels
            .iter()
            .position(|l| (l - wanted).abs() < 1e-4)
            .and_then(|i| forecast.values_kw.get(i))
            .map(|values| values.iter().map(|&v| f64::from(v)).collect())
            .ok_or_else(|| {
                ParticipantError::Protocol(format!(
                    "forecast has no quantile level {wanted} (levels {:?})",
                    forecast.levels
                ))
            })
    };
    Ok(SiteForecast {
        participant_id: String::new(),
        site: entry.site.clone(),
        sector: entry.sector.clone(),
        target: entry.target.as_str().to_string(),
        model: entry.model.clone(),
        version_id: entry.version_id.clone(),
        issued_unix_s: entry.issued_unix_s,
        step_s: entry.step_s,
        timestamps_unix_s: forecast.timestamps_unix_s.clone(),
        p10_kw: level(0.1)?,
        p50_kw: level(0.5)?,
        p90_kw: level(0.9)?,
    })
}

/// Publishes `forecast` for this participant over `channel` (a channel to the coordinator,
/// e.g. from [`crate::client::open_channel`]), signed by `link`'s identity.
pub async fn publish_site_forecast(
    link: &FederationLink,
    channel: Channel,
    forecast: SiteForecast,
) -> Result<PublishSiteForecastResponse, ParticipantError> {
    let mut request = PublishSiteForecastRequest {
        auth: None,
        forecast: Some(forecast),
    };
    request.auth = Some(link.authorize(proto::method::PUBLISH_SITE_FORECAST, &request));
    link.send_log("PublishSiteForecast", &request);
    Ok(ForecastClient::new(channel)
        .publish_site_forecast(request)
        .await?
        .into_inner())
}

/// Reads this participant's own forecasts from the board (the coordinator answers a signed
/// query with the signer's sites only; other sites need a board reader token).
pub async fn query_own_forecasts(
    link: &FederationLink,
    channel: Channel,
    mut request: QueryBoardRequest,
) -> Result<QueryBoardResponse, ParticipantError> {
    request.auth = None;
    request.auth = Some(link.authorize(proto::method::QUERY_BOARD, &request));
    link.send_log("QueryBoard", &request);
    Ok(ForecastClient::new(channel)
        .query_board(request)
        .await?
        .into_inner())
}
