//! Validated telemetry of one site, as read from Parquet (irregular, gaps allowed).

use serde::{Deserialize, Serialize};

/// Telemetry of one site after validation: strictly increasing UTC timestamps and, per column,
/// one optional value per timestamp. `None` means "not measured", never "zero".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteTelemetry {
    pub site_id: String,
    /// Unix seconds, UTC, strictly increasing.
    pub timestamps: Vec<i64>,
    /// Net site load in kW (consumption before PV), if the site meters it.
    pub load_kw: Option<Vec<Option<f64>>>,
    /// PV generation in kW (>= 0), if the site has PV.
    pub pv_kw: Option<Vec<Option<f64>>>,
    /// What the utility meter of a prosumer measures: import minus export, kW (negative when
    /// the site feeds in), if the site exports it.
    pub net_load_kw: Option<Vec<Option<f64>>>,
    /// Observed weather at the site.
    pub temperature_c: Option<Vec<Option<f64>>>,
    pub ghi_w_m2: Option<Vec<Option<f64>>>,
    /// Cloud cover fraction in [0, 1].
    pub cloud_cover: Option<Vec<Option<f64>>>,
    /// Day-ahead weather forecast valid at each timestamp (issued before the day started),
    /// the known-future covariates of the forecasters.
    pub temperature_forecast_c: Option<Vec<Option<f64>>>,
    pub ghi_forecast_w_m2: Option<Vec<Option<f64>>>,
    pub cloud_cover_forecast: Option<Vec<Option<f64>>>,
}

impl SiteTelemetry {
    /// Empty telemetry for `site_id` with no columns.
    pub fn new(site_id: impl Into<String>) -> Self {
        Self {
            site_id: site_id.into(),
            timestamps: Vec::new(),
            load_kw: None,
            pv_kw: None,
            net_load_kw: None,
            temperature_c: None,
            ghi_w_m2: None,
            cloud_cover: None,
            temperature_forecast_c: None,
            ghi_forecast_w_m2: None,
            cloud_cover_forecast: None,
        }
    }

    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// The value columns with their schema names, in schema order.
    pub fn columns(&self) -> [(&'static str, Option<&Vec<Option<f64>>>); 9] {
        use crate::schema::col;
        [
            (col::LOAD_KW, self.load_kw.as_ref()),
            (col::PV_KW, self.pv_kw.as_ref()),
            (col::NET_LOAD_KW, self.net_load_kw.as_ref()),
            (col::TEMPERATURE_C, self.temperature_c.as_ref()),
            (col::GHI_W_M2, self.ghi_w_m2.as_ref()),
            (col::CLOUD_COVER, self.cloud_cover.as_ref()),
            (
                col::TEMPERATURE_FORECAST_C,
                self.temperature_forecast_c.as_ref(),
            ),
            (col::GHI_FORECAST_W_M2, self.ghi_forecast_w_m2.as_ref()),
            (
                col::CLOUD_COVER_FORECAST,
                self.cloud_cover_forecast.as_ref(),
            ),
        ]
    }

    /// Mutable access to a value column by schema name (None for unknown names).
    pub fn column_mut(&mut self, name: &str) -> Option<&mut Option<Vec<Option<f64>>>> {
        use crate::schema::col;
        Some(match name {
            col::LOAD_KW => &mut self.load_kw,
            col::PV_KW => &mut self.pv_kw,
            col::NET_LOAD_KW => &mut self.net_load_kw,
            col::TEMPERATURE_C => &mut self.temperature_c,
            col::GHI_W_M2 => &mut self.ghi_w_m2,
            col::CLOUD_COVER => &mut self.cloud_cover,
            col::TEMPERATURE_FORECAST_C => &mut self.temperature_forecast_c,
            col::GHI_FORECAST_W_M2 => &mut self.ghi_forecast_w_m2,
            col::CLOUD_COVER_FORECAST => &mut self.cloud_cover_forecast,
            _ => return None,
        })
    }
}
