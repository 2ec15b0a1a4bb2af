//! Weather of the synthetic fleet: one shared process per climate region, local variation per
//! site, and a day-ahead forecast with autocorrelated error.
//!
//! Temperature is seasonal + diurnal + a synoptic AR(1) anomaly lasting days. Cloud cover is a
//! latent unit-variance Gaussian state (a fast component for passing fronts, a slow one for
//! weather regimes) pushed through a logistic, so skies are mostly clear or mostly overcast
//! with fewer in-between hours, as observed. A site sees the regional latent state plus its own
//! small-scale clouds. The forecast is one deterministic NWP run per region: correlated with
//! the regional truth but blind to the sites' local clouds.

use std::f64::consts::TAU;

use rand::Rng;
use rand_distr::StandardNormal;

/// How strongly the latent cloud state spreads cloud cover between clear and overcast.
const CLOUD_SPREAD: f64 = 2.0;
/// Correlation of the NWP's latent cloud state with the regional truth. Together with the
/// sites' local clouds this sets day-ahead PV uncertainty (see the fleet tests).
const CLOUD_FORECAST_SKILL: f64 = 0.85;
/// Correlation times of the latent cloud state's components (passing fronts, weather regimes)
/// and the fronts' share of its variance. Short regimes make yesterday a poor guide to today.
const FRONT_TAU_H: f64 = 8.0;
const REGIME_TAU_H: f64 = 24.0;
const FRONT_SHARE: f64 = 0.7;
/// Standard deviation of the regional day-ahead temperature error, °C.
const TEMPERATURE_FORECAST_SD_C: f64 = 1.3;

const HOUR_S: f64 = 3600.0;
const DAY_S: f64 = 86_400.0;
const YEAR_DAYS: f64 = 365.2425;

/// Climate of one region: where it is and the statistics of its weather.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Climate {
    pub timezone: chrono_tz::Tz,
    pub latitude: f64,
    pub longitude: f64,
    /// Annual mean temperature and half the summer-winter difference, °C.
    pub mean_temperature_c: f64,
    pub seasonal_amplitude_c: f64,
    /// Half the clear-day day-night temperature difference, °C.
    pub diurnal_amplitude_c: f64,
    /// Standard deviation of the multi-day temperature anomaly, °C.
    pub synoptic_sd_c: f64,
    /// Mean cloud cover and its winter excess over the annual mean.
    pub cloud_mean: f64,
    pub cloud_winter_excess: f64,
    /// Share of buildings with air conditioning and with electric (heat pump) heating.
    pub cooling_prevalence: f64,
    pub electric_heating_prevalence: f64,
}

/// Four European climates: continental, Mediterranean inland, Nordic, Mediterranean coast.
pub(crate) const CLIMATES: [Climate; 4] = [
    Climate {
        timezone: chrono_tz::Europe::Berlin,
        latitude: 52.52,
        longitude: 13.40,
        mean_temperature_c: 10.0,
        seasonal_amplitude_c: 9.5,
        diurnal_amplitude_c: 4.0,
        synoptic_sd_c: 3.0,
        cloud_mean: 0.76,
        cloud_winter_excess: 0.10,
        cooling_prevalence: 0.15,
        electric_heating_prevalence: 0.3,
    },
    Climate {
        timezone: chrono_tz::Europe::Madrid,
        latitude: 40.42,
        longitude: -3.70,
        mean_temperature_c: 15.0,
        seasonal_amplitude_c: 10.0,
        diurnal_amplitude_c: 6.5,
        synoptic_sd_c: 2.5,
        cloud_mean: 0.45,
        cloud_winter_excess: 0.15,
        cooling_prevalence: 0.6,
        electric_heating_prevalence: 0.2,
    },
    Climate {
        timezone: chrono_tz::Europe::Stockholm,
        latitude: 59.33,
        longitude: 18.07,
        mean_temperature_c: 7.5,
        seasonal_amplitude_c: 10.0,
        diurnal_amplitude_c: 3.5,
        synoptic_sd_c: 3.5,
        cloud_mean: 0.76,
        cloud_winter_excess: 0.15,
        cooling_prevalence: 0.1,
        electric_heating_prevalence: 0.7,
    },
    Climate {
        timezone: chrono_tz::Europe::Rome,
        latitude: 41.90,
        longitude: 12.50,
        mean_temperature_c: 16.0,
        seasonal_amplitude_c: 8.5,
        diurnal_amplitude_c: 5.0,
        synoptic_sd_c: 2.0,
        cloud_mean: 0.50,
        cloud_winter_excess: 0.15,
        cooling_prevalence: 0.5,
        electric_heating_prevalence: 0.2,
    },
];

/// A stationary AR(1) process with a given correlation time and marginal standard deviation,
/// so its statistics do not depend on the grid resolution.
#[derive(Clone, Debug)]
pub(crate) struct Ar1 {
    sd: f64,
    phi: f64,
    innovation_sd: f64,
    state: f64,
}

impl Ar1 {
    /// Starts in the stationary distribution.
    pub fn new(rng: &mut impl Rng, tau_s: f64, step_s: f64, sd: f64) -> Self {
        let phi = (-step_s / tau_s).exp();
        let state = sd * rng.sample::<f64, _>(StandardNormal);
        Self {
            sd,
            phi,
            innovation_sd: sd * (1.0 - phi * phi).sqrt(),
            state,
        }
    }

    /// Marginal (stationary) standard deviation.
    pub fn sd(&self) -> f64 {
        self.sd
    }

    /// Moves one step ahead and returns the new value.
    pub fn advance(&mut self, rng: &mut impl Rng) -> f64 {
        let shock: f64 = rng.sample(StandardNormal);
        self.state = self.phi * self.state + self.innovation_sd * shock;
        self.state
    }
}

/// The shared weather state of one region on the fleet's grid.
#[derive(Clone, Debug)]
pub(crate) struct RegionalWeather {
    pub climate: Climate,
    /// Multi-day temperature anomaly, °C.
    pub temperature_anomaly_c: Vec<f64>,
    /// Latent cloud state (unit variance).
    pub cloud_latent: Vec<f64>,
    /// Day-ahead temperature forecast error, °C.
    pub temperature_forecast_error_c: Vec<f64>,
    /// The forecast's latent cloud state (unit variance, correlated with `cloud_latent`).
    pub cloud_latent_forecast: Vec<f64>,
}

impl RegionalWeather {
    pub fn simulate(climate: Climate, steps: usize, step_s: i64, rng: &mut impl Rng) -> Self {
        let dt = step_s as f64;
        let mut anomaly = Ar1::new(rng, 3.0 * DAY_S, dt, climate.synoptic_sd_c);
        let mut fronts = Ar1::new(rng, FRONT_TAU_H * HOUR_S, dt, FRONT_SHARE.sqrt());
        let mut regimes = Ar1::new(rng, REGIME_TAU_H * HOUR_S, dt, (1.0 - FRONT_SHARE).sqrt());
        let mut temperature_error = Ar1::new(rng, 18.0 * HOUR_S, dt, TEMPERATURE_FORECAST_SD_C);
        let mut cloud_error = Ar1::new(rng, 12.0 * HOUR_S, dt, 1.0);
        let skill_rest = (1.0 - CLOUD_FORECAST_SKILL * CLOUD_FORECAST_SKILL).sqrt();
        let mut weather = Self {
            climate,
            temperature_anomaly_c: Vec::with_capacity(steps),
            cloud_latent: Vec::with_capacity(steps),
            temperature_forecast_error_c: Vec::with_capacity(steps),
            cloud_latent_forecast: Vec::with_capacity(steps),
        };
        for _ in 0..steps {
            let latent =
                std::f64::consts::FRAC_1_SQRT_2 * (fronts.advance(rng) + regimes.advance(rng));
            weather.temperature_anomaly_c.push(anomaly.advance(rng));
            weather.cloud_latent.push(latent);
            weather
                .temperature_forecast_error_c
                .push(temperature_error.advance(rng));
            weather
                .cloud_latent_forecast
                .push(CLOUD_FORECAST_SKILL * latent + skill_rest * cloud_error.advance(rng));
        }
        weather
    }
}

/// Phase of the year in radians, 0 at the start of January (drifts by under a day a year,
/// irrelevant to climate curves).
fn year_phase(unix_s: i64) -> f64 {
    TAU * (unix_s as f64 / DAY_S / YEAR_DAYS).rem_euclid(1.0)
}

/// Cloud cover in [0, 1] for a latent state at `unix_s` in a climate.
pub(crate) fn cloud_cover(climate: &Climate, latent: f64, unix_s: i64) -> f64 {
    // Cloudiest in mid-January.
    let seasonal = climate.cloud_mean
        + climate.cloud_winter_excess * (year_phase(unix_s) - TAU * 15.0 / YEAR_DAYS).cos();
    let mean = seasonal.clamp(0.05, 0.95);
    let logit = (mean / (1.0 - mean)).ln();
    1.0 / (1.0 + (-(logit + CLOUD_SPREAD * latent)).exp())
}

/// Climatological temperature at `unix_s` under cloud cover `cloud`, before anomalies, °C.
pub(crate) fn climate_temperature_c(
    climate: &Climate,
    longitude: f64,
    cloud: f64,
    unix_s: i64,
) -> f64 {
    // Coldest around 20 January.
    let seasonal = climate.mean_temperature_c
        - climate.seasonal_amplitude_c * (year_phase(unix_s) - TAU * 20.0 / YEAR_DAYS).cos();
    // Warmest around 15:00 local solar time; clouds damp the day-night swing both ways.
    let solar_hour =
        (unix_s.rem_euclid(86_400) as f64 / HOUR_S + longitude / 15.0).rem_euclid(24.0);
    let diurnal = climate.diurnal_amplitude_c
        * (1.0 - 0.6 * cloud)
        * (TAU * (solar_hour - 15.0) / 24.0).cos();
    seasonal + diurnal
}

/// Attenuation of clear-sky GHI by cloud cover (Kasten & Czeplak 1980).
pub(crate) fn cloud_transmittance(cloud: f64) -> f64 {
    1.0 - 0.75 * cloud.clamp(0.0, 1.0).powf(3.4)
}

/// How one site's weather departs from its region's.
#[derive(Clone, Debug)]
pub(crate) struct LocalWeather {
    /// Correlation of the site's latent cloud state with the region's.
    pub cloud_coherence: f64,
    /// Constant temperature offset (altitude, urban heat), °C.
    pub temperature_offset_c: f64,
    local_cloud: Ar1,
    local_temperature: Ar1,
}

/// Observed and forecast weather of a site at one step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SiteWeatherStep {
    pub temperature_c: f64,
    pub cloud_cover: f64,
    pub temperature_forecast_c: f64,
    pub cloud_cover_forecast: f64,
}

impl LocalWeather {
    pub fn sample(rng: &mut impl Rng, step_s: i64) -> Self {
        let dt = step_s as f64;
        Self {
            cloud_coherence: rng.random_range(0.92..0.97),
            temperature_offset_c: 0.8 * rng.sample::<f64, _>(StandardNormal),
            local_cloud: Ar1::new(rng, 3.0 * HOUR_S, dt, 1.0),
            local_temperature: Ar1::new(rng, 6.0 * HOUR_S, dt, 0.6),
        }
    }

    /// The site's weather at step `i` of the region's grid, advancing the local processes.
    pub fn step(
        &mut self,
        region: &RegionalWeather,
        longitude: f64,
        i: usize,
        unix_s: i64,
        rng: &mut impl Rng,
    ) -> SiteWeatherStep {
        let climate = &region.climate;
        let local = self.local_cloud.advance(rng);
        let coherence = self.cloud_coherence;
        let latent =
            coherence * region.cloud_latent[i] + (1.0 - coherence * coherence).sqrt() * local;
        let cloud = cloud_cover(climate, latent, unix_s);
        let cloud_forecast = cloud_cover(climate, region.cloud_latent_forecast[i], unix_s);
        let anomaly = region.temperature_anomaly_c[i] + self.temperature_offset_c;
        let temperature_c = climate_temperature_c(climate, longitude, cloud, unix_s)
            + anomaly
            + self.local_temperature.advance(rng);
        let temperature_forecast_c =
            climate_temperature_c(climate, longitude, cloud_forecast, unix_s)
                + anomaly
                + region.temperature_forecast_error_c[i];
        SiteWeatherStep {
            temperature_c,
            cloud_cover: cloud,
            temperature_forecast_c,
            cloud_cover_forecast: cloud_forecast,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ar1_keeps_its_marginal_spread_at_any_resolution() {
        for step_s in [900.0, 3600.0] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let mut process = Ar1::new(&mut rng, 6.0 * HOUR_S, step_s, 2.0);
            let values: Vec<f64> = (0..200_000).map(|_| process.advance(&mut rng)).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64)
                .sqrt();
            assert!(
                mean.abs() < 0.1 && (sd - 2.0).abs() < 0.1,
                "step {step_s}: mean {mean} sd {sd}"
            );
        }
    }

    #[test]
    fn cloud_cover_stays_in_unit_interval_and_tracks_the_latent_state() {
        let berlin = &CLIMATES[0];
        let values: Vec<f64> = [-6.0, -1.0, 0.0, 1.0, 6.0]
            .iter()
            .map(|&z| cloud_cover(berlin, z, 0))
            .collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
        assert!(values[0] > 0.0 && values[4] < 1.0, "{values:?}");
        assert_eq!(cloud_transmittance(0.0), 1.0);
        assert!((cloud_transmittance(1.0) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn climate_is_colder_in_january_than_july_and_warmer_in_the_afternoon() {
        let madrid = &CLIMATES[1];
        // 2024-01-20 and 2024-07-20, 14:00 and 04:00 UTC.
        let jan = 1_705_708_800;
        let jul = 1_721_433_600;
        let at = |t: i64| climate_temperature_c(madrid, madrid.longitude, 0.2, t);
        assert!(at(jul + 14 * 3600) - at(jan + 14 * 3600) > 15.0);
        assert!(at(jul + 14 * 3600) - at(jul + 4 * 3600) > 8.0);
    }
}
