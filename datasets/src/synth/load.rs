//! Electricity demand of the synthetic fleet's buildings, by sector.
//!
//! A load is `mean_kw x (daily shape + heating + cooling) x noise`. The daily shape depends on
//! the local hour and the kind of day (workday, Saturday, Sunday or holiday) and is normalised
//! to a weekly mean of 1, so `mean_kw` is the mean load before weather. Heating grows below
//! 15 °C and cooling above 22 °C of the building's thermally smoothed outdoor temperature.
//! Noise is multiplicative: an AR(1) part (appliances left on, a busy afternoon) and a white
//! part (switching), both log-normal so load stays strictly positive.

use std::f64::consts::TAU;

use chrono::{Datelike, NaiveDateTime, Timelike, Weekday};
use rand::Rng;
use rand_distr::StandardNormal;

use super::weather::{Ar1, Climate};
use crate::Sector;
use crate::calendar::is_holiday;

const HEATING_BALANCE_C: f64 = 15.0;
const COOLING_BALANCE_C: f64 = 22.0;
/// Thermal time constant of a building: how slowly indoor demand follows the weather.
const THERMAL_TAU_S: f64 = 8.0 * 3600.0;

/// How a day is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DayKind {
    Workday,
    Saturday,
    /// Sundays and holidays.
    Rest,
}

impl DayKind {
    fn of(local: &NaiveDateTime) -> Self {
        let date = local.date();
        match date.weekday() {
            Weekday::Sun => DayKind::Rest,
            _ if is_holiday(date) => DayKind::Rest,
            Weekday::Sat => DayKind::Saturday,
            _ => DayKind::Workday,
        }
    }
}

/// The daily shape of one sector with this site's own parameters.
#[derive(Clone, Debug)]
enum DailyShape {
    Residential {
        base: f64,
        morning_peak: f64,
        morning_hour: f64,
        evening_peak: f64,
        evening_hour: f64,
        /// Extra daytime presence at home on rest days and Saturdays.
        weekend_midday: f64,
        /// How much later people get up on weekends, hours.
        weekend_lie_in_h: f64,
    },
    Commercial {
        open_hour: f64,
        close_hour: f64,
        /// Night and weekend load (servers, refrigeration, ventilation) relative to open hours.
        closed_level: f64,
        /// Saturday activity relative to a workday (shops open, offices not).
        saturday_level: f64,
    },
    Industrial {
        base: f64,
        shifts: u8,
        first_shift_hour: f64,
        saturday_level: f64,
        rest_level: f64,
        /// Annual maintenance shutdown: first day of year (0-based) and length in days.
        shutdown: Option<(u32, u32)>,
        /// Closed between Christmas Eve and New Year.
        christmas_break: bool,
    },
}

/// A Gaussian bump on the 24-hour circle.
fn bump(hour: f64, center: f64, width_h: f64) -> f64 {
    let d = (hour - center + 12.0).rem_euclid(24.0) - 12.0;
    (-0.5 * (d / width_h).powi(2)).exp()
}

/// Smoothly 1 between `from` and `to` (hours of one day), 0 outside.
fn window(hour: f64, from: f64, to: f64, ramp_h: f64) -> f64 {
    let rise = 1.0 / (1.0 + (-(hour - from) / ramp_h).exp());
    let fall = 1.0 / (1.0 + (-(to - hour) / ramp_h).exp());
    rise * fall
}

impl DailyShape {
    fn sample(sector: Sector, rng: &mut impl Rng) -> Self {
        match sector {
            Sector::Residential => DailyShape::Residential {
                base: rng.random_range(0.3..0.55),
                morning_peak: rng.random_range(0.2..0.7),
                morning_hour: rng.random_range(6.0..8.0),
                evening_peak: rng.random_range(0.6..1.3),
                evening_hour: rng.random_range(18.0..20.5),
                weekend_midday: rng.random_range(0.2..0.5),
                weekend_lie_in_h: rng.random_range(0.5..2.0),
            },
            Sector::Commercial => {
                let retail = rng.random_bool(0.35);
                DailyShape::Commercial {
                    open_hour: rng.random_range(6.5..9.0),
                    close_hour: if retail {
                        rng.random_range(19.0..21.0)
                    } else {
                        rng.random_range(17.0..19.0)
                    },
                    closed_level: rng.random_range(0.2..0.45),
                    saturday_level: if retail {
                        rng.random_range(0.6..0.9)
                    } else {
                        0.0
                    },
                }
            }
            Sector::Industrial => {
                let shifts = match rng.random_range(0..10) {
                    0..3 => 1,
                    3..7 => 2,
                    _ => 3,
                };
                let (saturday_level, rest_level) = if shifts == 3 {
                    (rng.random_range(0.6..1.0), rng.random_range(0.3..0.9))
                } else {
                    (rng.random_range(0.0..0.5), rng.random_range(0.0..0.1))
                };
                DailyShape::Industrial {
                    base: rng.random_range(0.45..0.75),
                    shifts,
                    first_shift_hour: rng.random_range(5.5..7.5),
                    saturday_level,
                    rest_level,
                    shutdown: rng
                        .random_bool(0.5)
                        .then(|| (rng.random_range(200..225), rng.random_range(7..15))),
                    christmas_break: rng.random_bool(0.7),
                }
            }
        }
    }

    /// Relative load at a local hour on a day of `kind`; `winter` in [-1, 1] (1 mid-winter)
    /// lengthens evening lighting; `local` is the local time (annual shutdowns, breaks).
    fn at(&self, hour: f64, kind: DayKind, winter: f64, local: Option<&NaiveDateTime>) -> f64 {
        match *self {
            DailyShape::Residential {
                base,
                morning_peak,
                morning_hour,
                evening_peak,
                evening_hour,
                weekend_midday,
                weekend_lie_in_h,
            } => {
                let at_home = kind != DayKind::Workday;
                let wake = if at_home {
                    morning_hour + weekend_lie_in_h
                } else {
                    morning_hour
                };
                let midday = if at_home {
                    weekend_midday * bump(hour, 13.0, 2.5)
                } else {
                    0.0
                };
                base + morning_peak * bump(hour, wake, 1.0)
                    + evening_peak * (1.0 + 0.25 * winter) * bump(hour, evening_hour, 1.8)
                    + midday
            }
            DailyShape::Commercial {
                open_hour,
                close_hour,
                closed_level,
                saturday_level,
            } => {
                let activity = match kind {
                    DayKind::Workday => 1.0,
                    DayKind::Saturday => saturday_level,
                    DayKind::Rest => 0.0,
                };
                let open =
                    window(hour, open_hour, close_hour, 0.4) * (1.0 - 0.06 * bump(hour, 12.5, 0.7));
                closed_level + (1.0 - closed_level) * activity * open
            }
            DailyShape::Industrial {
                base,
                shifts,
                first_shift_hour,
                saturday_level,
                rest_level,
                shutdown,
                christmas_break,
            } => {
                let start = first_shift_hour;
                let production = match shifts {
                    1 => {
                        window(hour, start, start + 9.0, 0.3)
                            * (1.0 - 0.2 * bump(hour, start + 4.5, 0.5))
                    }
                    2 => {
                        window(hour, start, start + 16.0, 0.3)
                            * (1.0 - 0.1 * bump(hour, start + 8.0, 0.4))
                    }
                    _ => {
                        1.0 - 0.12
                            * [0.0, 8.0, 16.0]
                                .iter()
                                .map(|o| bump(hour, start + o, 0.4))
                                .sum::<f64>()
                    }
                };
                let mut day_level = match kind {
                    DayKind::Workday => 1.0,
                    DayKind::Saturday => saturday_level,
                    DayKind::Rest => rest_level,
                };
                if let Some(local) = local {
                    let day = local.ordinal0();
                    let in_shutdown =
                        shutdown.is_some_and(|(first, len)| (first..first + len).contains(&day));
                    let holidays = christmas_break
                        && ((local.month() == 12 && local.day() >= 24)
                            || (local.month() == 1 && local.day() == 1));
                    if in_shutdown || holidays {
                        day_level = day_level.min(0.05);
                    }
                }
                base + (1.0 - base) * production * day_level
            }
        }
    }

    /// Mean of the shape over a typical week (five workdays, a Saturday, a Sunday).
    fn weekly_mean(&self) -> f64 {
        let day_mean = |kind| {
            (0..96)
                .map(|q| self.at((q as f64 + 0.5) / 4.0, kind, 0.0, None))
                .sum::<f64>()
                / 96.0
        };
        (5.0 * day_mean(DayKind::Workday) + day_mean(DayKind::Saturday) + day_mean(DayKind::Rest))
            / 7.0
    }
}

/// A draw between `lo` and `hi` uniform in log space: building sizes span orders of magnitude.
fn log_uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    rng.random_range(lo.ln()..hi.ln()).exp()
}

/// One building's demand model and its running state.
#[derive(Clone, Debug)]
pub(crate) struct LoadModel {
    /// Mean load before weather effects, kW.
    pub mean_kw: f64,
    shape: DailyShape,
    shape_mean: f64,
    /// Extra load per kelvin below the heating balance point, as a share of `mean_kw`.
    heating_per_k: f64,
    /// Extra load per kelvin above the cooling balance point, as a share of `mean_kw`.
    cooling_per_k: f64,
    sector: Sector,
    persistent_noise: Ar1,
    white_noise_sd: f64,
    /// Thermally smoothed outdoor temperature, °C (None before the first step).
    felt_temperature_c: Option<f64>,
    thermal_weight: f64,
}

impl LoadModel {
    pub fn sample(sector: Sector, climate: &Climate, step_s: i64, rng: &mut impl Rng) -> Self {
        let (mean_kw, heating_per_k, cooling_per_k, noise_sd, noise_tau_h, white_sd) = match sector
        {
            Sector::Residential => {
                let electric_heating = rng.random_bool(climate.electric_heating_prevalence);
                let air_conditioning = rng.random_bool(climate.cooling_prevalence);
                (
                    log_uniform(rng, 0.3, 3.0),
                    if electric_heating {
                        rng.random_range(0.03..0.08)
                    } else {
                        rng.random_range(0.0..0.01)
                    },
                    if air_conditioning {
                        rng.random_range(0.03..0.08)
                    } else {
                        0.0
                    },
                    rng.random_range(0.12..0.25),
                    rng.random_range(1.0..4.0),
                    rng.random_range(0.08..0.18),
                )
            }
            Sector::Commercial => (
                log_uniform(rng, 20.0, 300.0),
                rng.random_range(0.0..0.03),
                rng.random_range(0.02..0.05) * (0.5 + climate.cooling_prevalence),
                rng.random_range(0.04..0.08),
                rng.random_range(2.0..8.0),
                rng.random_range(0.02..0.05),
            ),
            Sector::Industrial => (
                log_uniform(rng, 200.0, 2000.0),
                rng.random_range(0.0..0.01),
                rng.random_range(0.005..0.015),
                rng.random_range(0.03..0.07),
                rng.random_range(2.0..8.0),
                rng.random_range(0.02..0.04),
            ),
        };
        let shape = DailyShape::sample(sector, rng);
        let dt = step_s as f64;
        Self {
            mean_kw,
            shape_mean: shape.weekly_mean(),
            shape,
            heating_per_k,
            cooling_per_k,
            sector,
            persistent_noise: Ar1::new(rng, noise_tau_h * 3600.0, dt, noise_sd),
            white_noise_sd: white_sd,
            felt_temperature_c: None,
            thermal_weight: 1.0 - (-dt / THERMAL_TAU_S).exp(),
        }
    }

    /// Load in kW over a step whose middle is at local time `local_mid`, with outdoor
    /// temperature `temperature_c`; advances the model's state by one step.
    pub fn step(
        &mut self,
        local_mid: &NaiveDateTime,
        temperature_c: f64,
        rng: &mut impl Rng,
    ) -> f64 {
        let hour = f64::from(local_mid.hour())
            + f64::from(local_mid.minute()) / 60.0
            + f64::from(local_mid.second()) / 3600.0;
        let felt = match self.felt_temperature_c {
            Some(previous) => previous + self.thermal_weight * (temperature_c - previous),
            None => temperature_c,
        };
        self.felt_temperature_c = Some(felt);
        let kind = DayKind::of(local_mid);
        let winter = (TAU * (f64::from(local_mid.ordinal0()) - 15.0) / 365.25).cos();
        let shape = self.shape.at(hour, kind, winter, Some(local_mid)) / self.shape_mean;
        // Cooling runs while people are there and the sun heats the building.
        let cooling_presence = match self.sector {
            Sector::Residential => 0.3 + 0.7 * bump(hour, 17.0, 4.0),
            Sector::Commercial => shape.min(1.0),
            Sector::Industrial => 1.0,
        };
        let heating = self.heating_per_k * (HEATING_BALANCE_C - felt).max(0.0);
        let cooling = self.cooling_per_k * (felt - COOLING_BALANCE_C).max(0.0) * cooling_presence;
        let persistent = self.persistent_noise.advance(rng);
        let white = self.white_noise_sd * rng.sample::<f64, _>(StandardNormal);
        // exp(x - var/2) has mean 1, so noise does not shift the mean load.
        let variance = self.persistent_noise.sd().powi(2) + self.white_noise_sd.powi(2);
        self.mean_kw * (shape + heating + cooling) * (persistent + white - 0.5 * variance).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn monday_noon() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2024, 6, 10)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("date")
    }

    #[test]
    fn shapes_average_to_their_weekly_mean_and_commerce_closes_on_sundays() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for sector in Sector::ALL {
            for _ in 0..20 {
                let shape = DailyShape::sample(sector, &mut rng);
                let mean = shape.weekly_mean();
                assert!(mean > 0.2 && mean < 2.0, "{sector:?}: {mean}");
                if sector == Sector::Commercial {
                    let weekday = shape.at(12.0, DayKind::Workday, 0.0, None);
                    let sunday = shape.at(12.0, DayKind::Rest, 0.0, None);
                    assert!(sunday < 0.5 * weekday, "{weekday} {sunday}");
                }
            }
        }
    }

    #[test]
    fn cold_weather_raises_electric_heating_load() {
        let berlin = super::super::weather::CLIMATES[0];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut model = LoadModel::sample(Sector::Residential, &berlin, 3600, &mut rng);
        model.heating_per_k = 0.05;
        model.white_noise_sd = 0.0;
        model.persistent_noise = Ar1::new(&mut rng, 3600.0, 3600.0, 0.0);
        let t = monday_noon();
        let mild = model.clone().step(&t, 15.0, &mut rng);
        let cold = model.clone().step(&t, -5.0, &mut rng);
        // 20 K below the balance point at 5 %/K adds one mean load.
        assert!(
            ((cold - mild) / model.mean_kw - 1.0).abs() < 1e-9,
            "{mild} {cold}"
        );
    }
}
