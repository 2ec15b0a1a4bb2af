//! The `realistic` profile: what operators' exports look like, not what a physics model gives.
//!
//! Starting from a clean site (same seed, same weather, same PV), it
//! - replaces every home's smooth demand curve with appliance events ([`super::household`]),
//!   so a single home's day-ahead error is in the range real homes show;
//! - drops every weather column (most exports carry none);
//! - logs PV only while the sun is up, as inverters that sleep at night do (a PV plant's file
//!   then has no rows at night at all; a prosumer's keeps its load rows);
//! - gives half of the PV homes a net meter: their utility meter reads import minus export
//!   (`net_load_kw`, negative at noon) instead of consumption, with the connection's import
//!   and export limits in the metadata;
//! - cuts a few telemetry outages (hours to a day and a half) out of every site.

use rand::Rng;

use super::household::Household;
use super::site::Grid;
use crate::solar::is_daylight;
use crate::{Sector, SiteKind, SiteMetadata, SiteTelemetry};

/// Which kind of fleet `generate_fleet` makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Physically grounded, complete, with weather and day-ahead weather forecasts.
    #[default]
    Clean,
    /// Noisy homes, no weather columns, daylight-only inverters, outages.
    Realistic,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "clean" => Ok(Profile::Clean),
            "realistic" => Ok(Profile::Realistic),
            other => Err(format!(
                "unknown profile `{other}` (expected `clean` or `realistic`)"
            )),
        }
    }
}

/// Most outages a site gets in a year, and their length range in hours.
const MAX_OUTAGES_PER_YEAR: f64 = 3.0;
const OUTAGE_HOURS: std::ops::Range<f64> = 2.0..36.0;

/// Share of residential prosumers whose export is a net meter's reading.
const NET_METERED_SHARE: f64 = 0.5;
/// A home's grid connection: 3 x 35 A at 230 V, rounded.
const HOME_IMPORT_LIMIT_KW: f64 = 24.0;

/// Turns a clean site into what its operator would export (see the module docs).
pub(crate) fn degrade(
    meta: &mut SiteMetadata,
    telemetry: &mut SiteTelemetry,
    grid: Grid,
    rng: &mut impl Rng,
) {
    if meta.sector == Sector::Residential
        && telemetry.load_kw.is_some()
        && let (Some(temperature), Some(tz)) = (&telemetry.temperature_c, meta.tz())
    {
        let temperature: Vec<f64> = temperature.iter().map(|t| t.unwrap_or(10.0)).collect();
        let days = (grid.steps as i64 * grid.step_s).div_euclid(86_400) + 1;
        let home = Household::sample(days, rng);
        let load = home.simulate(grid.start_unix_s, grid.step_s, &temperature, tz, rng);
        telemetry.load_kw = Some(load.into_iter().map(Some).collect());
    }
    // Drawn for every site so the other draws do not depend on which sites are homes.
    let net_metered = rng.random_bool(NET_METERED_SHARE);
    if net_metered
        && meta.sector == Sector::Residential
        && meta.kind == SiteKind::Prosumer
        && let (Some(load), Some(pv)) = (telemetry.load_kw.take(), &telemetry.pv_kw)
    {
        let net = load
            .iter()
            .zip(pv)
            .map(|(load, pv)| Some(load.unwrap_or(0.0) - pv.unwrap_or(0.0)))
            .collect();
        telemetry.net_load_kw = Some(net);
        meta.import_limit_kw = Some(HOME_IMPORT_LIMIT_KW);
        meta.export_limit_kw = Some(meta.capacity_kw);
    }
    for column in [
        &mut telemetry.temperature_c,
        &mut telemetry.ghi_w_m2,
        &mut telemetry.cloud_cover,
        &mut telemetry.temperature_forecast_c,
        &mut telemetry.ghi_forecast_w_m2,
        &mut telemetry.cloud_cover_forecast,
    ] {
        *column = None;
    }
    if let Some(pv) = telemetry.pv_kw.as_mut() {
        for (value, &ts) in pv.iter_mut().zip(&telemetry.timestamps) {
            if !is_daylight(meta.latitude, meta.longitude, ts, grid.step_s) {
                *value = None;
            }
        }
    }
    let mut keep = vec![true; telemetry.len()];
    let years = grid.steps as f64 * grid.step_s as f64 / (365.0 * 86_400.0);
    let outages = (rng.random_range(0.0..=MAX_OUTAGES_PER_YEAR) * years).round() as usize;
    for _ in 0..outages {
        let steps = (rng.random_range(OUTAGE_HOURS) * 3600.0 / grid.step_s as f64).ceil() as usize;
        let first = rng.random_range(0..keep.len().max(1));
        for k in keep.iter_mut().skip(first).take(steps) {
            *k = false;
        }
    }
    // A row without any value is no row: the logger wrote nothing then.
    for (i, k) in keep.iter_mut().enumerate() {
        let any = telemetry
            .columns()
            .iter()
            .any(|(_, c)| c.is_some_and(|c| c[i].is_some()));
        *k &= any;
    }
    retain_rows(telemetry, &keep);
}

fn retain_rows(telemetry: &mut SiteTelemetry, keep: &[bool]) {
    let filter = |values: &mut Vec<Option<f64>>| {
        let mut k = keep.iter();
        values.retain(|_| k.next().copied().unwrap_or(false));
    };
    let mut k = keep.iter();
    telemetry
        .timestamps
        .retain(|_| k.next().copied().unwrap_or(false));
    for name in crate::schema::VALUE_COLUMNS {
        if let Some(Some(values)) = telemetry.column_mut(name) {
            filter(values);
        }
    }
}
