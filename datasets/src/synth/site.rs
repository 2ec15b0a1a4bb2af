//! One synthetic site: its metadata, its building and PV system, and its telemetry.

use rand::Rng;

use super::load::LoadModel;
use super::pv::{PvOwner, PvSystem};
use super::weather::{LocalWeather, RegionalWeather, cloud_transmittance};
use crate::calendar::local_datetime;
use crate::solar::{erbs_split, haurwitz_ghi_w_m2, plane_of_array_w_m2, sun_position};
use crate::{Sector, SiteKind, SiteMetadata, SiteTelemetry};

/// Irradiance is integrated over a step in sub-steps of at most this long, so hours that
/// contain sunrise or sunset get their partial energy.
const IRRADIANCE_SUBSTEP_S: i64 = 900;

/// What a site is, before its parameters are drawn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SitePlan {
    pub index: usize,
    pub kind: SiteKind,
    pub sector: Sector,
}

/// The regular time grid of a fleet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub start_unix_s: i64,
    pub step_s: i64,
    pub steps: usize,
}

/// Rounds to `decimals` places: metadata carries survey precision, not float noise.
fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Draws the site's parameters and simulates its telemetry on `grid`.
pub(crate) fn simulate_site(
    plan: SitePlan,
    region: &RegionalWeather,
    grid: Grid,
    rng: &mut impl Rng,
) -> (SiteMetadata, SiteTelemetry) {
    let climate = &region.climate;
    let latitude = round_to(climate.latitude + rng.random_range(-1.0..1.0), 3);
    let longitude = round_to(climate.longitude + rng.random_range(-1.5..1.5), 3);
    let mut load = plan
        .kind
        .has_load()
        .then(|| LoadModel::sample(plan.sector, climate, grid.step_s, rng));
    let pv = plan.kind.has_pv().then(|| {
        // Rooftop PV is sized to the building's yearly use (~1 MWh per kWp in Europe).
        let annual_mwh = load.as_ref().map_or(0.0, |l| l.mean_kw * 8.76);
        let (owner, capacity_kw) = match (plan.kind, plan.sector) {
            (SiteKind::PvPlant, _) => (
                PvOwner::Plant,
                round_to(rng.random_range(500f64.ln()..5000f64.ln()).exp(), -1),
            ),
            (_, Sector::Residential) => (
                PvOwner::Household,
                round_to(
                    (annual_mwh * rng.random_range(0.5..1.3)).clamp(2.0, 25.0),
                    1,
                ),
            ),
            _ => (
                PvOwner::Business,
                round_to((annual_mwh * rng.random_range(0.2..0.6)).max(10.0), 0),
            ),
        };
        PvSystem::sample(owner, capacity_kw, latitude, rng)
    });
    let mut local_weather = LocalWeather::sample(rng, grid.step_s);

    let n = grid.steps;
    let mut timestamps = Vec::with_capacity(n);
    let mut load_kw = Vec::with_capacity(if load.is_some() { n } else { 0 });
    let mut pv_kw = Vec::with_capacity(if pv.is_some() { n } else { 0 });
    let mut temperature_c = Vec::with_capacity(n);
    let mut ghi_w_m2 = Vec::with_capacity(n);
    let mut cloud_cover = Vec::with_capacity(n);
    let mut temperature_forecast_c = Vec::with_capacity(n);
    let mut ghi_forecast_w_m2 = Vec::with_capacity(n);
    let mut cloud_cover_forecast = Vec::with_capacity(n);

    let substeps = (grid.step_s / IRRADIANCE_SUBSTEP_S).max(1);
    for i in 0..n {
        let start = grid.start_unix_s + i as i64 * grid.step_s;
        let mid = start + grid.step_s / 2;
        let weather = local_weather.step(region, longitude, i, mid, rng);
        let clear = cloud_transmittance(weather.cloud_cover);
        let clear_forecast = cloud_transmittance(weather.cloud_cover_forecast);
        let (mut ghi, mut ghi_forecast, mut power) = (0.0, 0.0, 0.0);
        for k in 0..substeps {
            let t = start + (2 * k + 1) * grid.step_s / (2 * substeps);
            let sun = sun_position(latitude, longitude, t);
            let clear_sky = haurwitz_ghi_w_m2(sun.zenith_deg);
            if clear_sky <= 0.0 {
                continue;
            }
            ghi += clear_sky * clear;
            ghi_forecast += clear_sky * clear_forecast;
            if let Some(pv) = &pv {
                let split = erbs_split(clear_sky * clear, &sun, t);
                let poa = plane_of_array_w_m2(&split, &sun, &pv.orientation, pv.albedo);
                power += pv.ac_power_kw(poa, weather.temperature_c);
            }
        }
        let per_substep = 1.0 / substeps as f64;
        timestamps.push(start);
        temperature_c.push(Some(weather.temperature_c));
        cloud_cover.push(Some(weather.cloud_cover));
        ghi_w_m2.push(Some(ghi * per_substep));
        temperature_forecast_c.push(Some(weather.temperature_forecast_c));
        cloud_cover_forecast.push(Some(weather.cloud_cover_forecast));
        ghi_forecast_w_m2.push(Some(ghi_forecast * per_substep));
        if pv.is_some() {
            pv_kw.push(Some(power * per_substep));
        }
        if let Some(load) = &mut load {
            let local_mid = local_datetime(climate.timezone, mid);
            load_kw.push(Some(load.step(&local_mid, weather.temperature_c, rng)));
        }
    }

    let metadata = SiteMetadata {
        site_id: format!("site-{:03}", plan.index),
        kind: plan.kind,
        sector: plan.sector,
        latitude,
        longitude,
        capacity_kw: pv.as_ref().map_or(0.0, |pv| pv.capacity_kw),
        timezone: climate.timezone.name().to_string(),
        pv_tilt_deg: pv.as_ref().map_or(0.0, |pv| pv.orientation.tilt_deg),
        pv_azimuth_deg: pv.as_ref().map_or(180.0, |pv| pv.orientation.azimuth_deg),
        import_limit_kw: None,
        export_limit_kw: None,
    };
    let telemetry = SiteTelemetry {
        site_id: metadata.site_id.clone(),
        timestamps,
        load_kw: load.is_some().then_some(load_kw),
        pv_kw: pv.is_some().then_some(pv_kw),
        net_load_kw: None,
        temperature_c: Some(temperature_c),
        ghi_w_m2: Some(ghi_w_m2),
        cloud_cover: Some(cloud_cover),
        temperature_forecast_c: Some(temperature_forecast_c),
        ghi_forecast_w_m2: Some(ghi_forecast_w_m2),
        cloud_cover_forecast: Some(cloud_cover_forecast),
    };
    (metadata, telemetry)
}
