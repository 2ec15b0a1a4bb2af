//! The telemetry schema: one source of truth for column names and their types.

/// Column names of the long-format telemetry table.
pub mod col {
    pub const TIMESTAMP: &str = "timestamp";
    pub const SITE_ID: &str = "site_id";
    pub const LOAD_KW: &str = "load_kw";
    pub const PV_KW: &str = "pv_kw";
    pub const NET_LOAD_KW: &str = "net_load_kw";
    pub const TEMPERATURE_C: &str = "temperature_c";
    pub const GHI_W_M2: &str = "ghi_w_m2";
    pub const CLOUD_COVER: &str = "cloud_cover";
    pub const TEMPERATURE_FORECAST_C: &str = "temperature_forecast_c";
    pub const GHI_FORECAST_W_M2: &str = "ghi_forecast_w_m2";
    pub const CLOUD_COVER_FORECAST: &str = "cloud_cover_forecast";
}

/// Target columns: at least one must be present.
pub const TARGET_COLUMNS: [&str; 3] = [col::LOAD_KW, col::PV_KW, col::NET_LOAD_KW];

/// Every optional float64 value column, in schema order.
pub const VALUE_COLUMNS: [&str; 9] = [
    col::LOAD_KW,
    col::PV_KW,
    col::NET_LOAD_KW,
    col::TEMPERATURE_C,
    col::GHI_W_M2,
    col::CLOUD_COVER,
    col::TEMPERATURE_FORECAST_C,
    col::GHI_FORECAST_W_M2,
    col::CLOUD_COVER_FORECAST,
];

/// Negative PV readings down to this many kW are inverter night consumption / meter noise
/// and are accepted; anything lower is an impossible value.
pub const PV_NEGATIVE_TOLERANCE_KW: f64 = 0.05;

/// PV may exceed nameplate capacity by this factor (cold, clear, edge-of-cloud enhancement)
/// before it counts as impossible.
pub const PV_OVER_CAPACITY_FACTOR: f64 = 1.15;

/// A net meter may read this factor beyond the site's declared import or export limit
/// (short peaks, limits declared as contract values) before a value counts as impossible.
pub const NET_LOAD_LIMIT_TOLERANCE: f64 = 1.1;

/// Plausible physical ranges for covariates, inclusive.
pub const TEMPERATURE_RANGE_C: (f64, f64) = (-90.0, 60.0);
pub const GHI_RANGE_W_M2: (f64, f64) = (-5.0, 1500.0);
pub const CLOUD_COVER_RANGE: (f64, f64) = (0.0, 1.0);
