//! A single home's demand as real smart meters see it: appliance events, not a smooth curve.
//!
//! Used by the `realistic` profile. A day's occupancy is drawn first (when people get up, leave,
//! come back and go to bed; whole weeks away on holiday), then appliance runs are drawn as
//! events inside it: kettles, cooking, washing machines and dishwashers, lighting and
//! entertainment, an electric vehicle charging when it comes home, a heat pump whose compressor
//! runs more the colder it is. Each event's energy is spread over the grid steps it overlaps,
//! so an hourly value is the hour's mean power, as a meter reports it. The result has the
//! statistics of real homes: a base load under it, peaks several times the mean, and most of
//! the day-to-day variation unpredictable from the day before.

use std::f64::consts::TAU;

use chrono::{Datelike, NaiveDate, Weekday};
use rand::Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

use crate::calendar::{is_holiday, local_datetime};

const HOUR_S: f64 = 3600.0;
/// Home charger powers (single-phase 16 A and 32 A, three-phase 16 A), kW.
const EV_CHARGERS_KW: [f64; 3] = [3.7, 7.4, 11.0];
/// Below this daily mean outdoor temperature a heat pump heats.
const HEAT_PUMP_BALANCE_C: f64 = 15.0;

/// The appliances and habits of one home, drawn once.
#[derive(Clone, Debug)]
pub(crate) struct Household {
    /// Always-on load (fridge, standby, router), kW.
    base_kw: f64,
    /// Mean power of lights and entertainment while people are up and at home, kW.
    presence_kw: f64,
    /// Whether somebody leaves for work on workdays, and the usual times (local hours).
    commutes: bool,
    wake_h: f64,
    leave_h: f64,
    return_h: f64,
    sleep_h: f64,
    kettle_kw: f64,
    cooking_kw: f64,
    washer_per_week: f64,
    dishwasher: bool,
    /// Charger power and the share of days the car comes home needing charge.
    ev: Option<(f64, f64)>,
    /// Heat pump electric power per kelvin below the balance point, kW/K.
    heat_pump_kw_per_k: Option<f64>,
    /// Holiday weeks away: (first day index, days).
    away: Vec<(i64, i64)>,
}

impl Household {
    pub fn sample(days: i64, rng: &mut impl Rng) -> Self {
        let mut away = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let length = rng.random_range(4..=15);
            away.push((rng.random_range(0..days.max(1)), length));
        }
        Self {
            base_kw: rng.random_range(0.08..0.3),
            presence_kw: rng.random_range(0.1..0.45),
            commutes: rng.random_bool(0.75),
            wake_h: rng.random_range(5.5..7.5),
            leave_h: rng.random_range(7.0..9.0),
            return_h: rng.random_range(16.0..19.0),
            sleep_h: rng.random_range(22.0..24.0),
            kettle_kw: rng.random_range(1.8..3.0),
            cooking_kw: rng.random_range(1.5..3.5),
            washer_per_week: rng.random_range(1.5..5.0),
            dishwasher: rng.random_bool(0.6),
            ev: rng.random_bool(0.35).then(|| {
                (
                    EV_CHARGERS_KW[rng.random_range(0..EV_CHARGERS_KW.len())],
                    rng.random_range(0.3..0.8),
                )
            }),
            heat_pump_kw_per_k: rng.random_bool(0.3).then(|| rng.random_range(0.05..0.15)),
            away,
        }
    }

    fn is_away(&self, day: i64) -> bool {
        self.away
            .iter()
            .any(|&(first, length)| (first..first + length).contains(&day))
    }

    /// Mean power of every grid step, kW. `temperature_c[i]` is the outdoor temperature of step
    /// `i`; steps start at `start_unix_s` and last `step_s`; `tz` is the home's time zone.
    pub fn simulate(
        &self,
        start_unix_s: i64,
        step_s: i64,
        temperature_c: &[f64],
        tz: chrono_tz::Tz,
        rng: &mut impl Rng,
    ) -> Vec<f64> {
        let steps = temperature_c.len();
        let mut energy_kwh = vec![0.0f64; steps];
        let end_unix_s = start_unix_s + steps as i64 * step_s;
        let mut add = |from_s: f64, duration_s: f64, kw: f64| {
            spread(
                &mut energy_kwh,
                start_unix_s,
                step_s,
                from_s,
                duration_s,
                kw,
            )
        };
        // Whole local days covering the grid; events outside it fall off in `spread`.
        let first_local = local_datetime(tz, start_unix_s).date();
        let last_local = local_datetime(tz, end_unix_s).date();
        let mut date = first_local;
        let mut day_index = 0i64;
        while date <= last_local {
            // Local midnight as a UTC instant: the offset at noon avoids DST-change ambiguity.
            let midnight_s = local_midnight_unix_s(tz, date);
            let at = |hour: f64| midnight_s as f64 + hour * HOUR_S;
            let rest_day =
                matches!(date.weekday(), Weekday::Sat | Weekday::Sun) || is_holiday(date);
            if self.is_away(day_index) {
                date = next_day(date);
                day_index += 1;
                continue;
            }
            let wake = around(rng, self.wake_h + if rest_day { 1.5 } else { 0.0 }, 0.5);
            let sleep =
                around(rng, self.sleep_h + if rest_day { 0.5 } else { 0.0 }, 0.6).max(wake + 8.0);
            let out = if !rest_day && self.commutes {
                Some((
                    around(rng, self.leave_h, 0.4),
                    around(rng, self.return_h, 1.0),
                ))
            } else if rng.random_bool(0.5) {
                // An afternoon out on a free day.
                let leave = around(rng, 13.0, 1.5);
                Some((leave, leave + rng.random_range(1.5..5.0)))
            } else {
                None
            };
            let home_from = out.map_or(wake, |(_, back)| back);
            // Lights, TV, computers: while up and at home, switched on and off (each half hour
            // at its own log-normal level), more in the evening.
            let home_spans = match out {
                Some((leave, back)) => [(wake, leave, 1.0), (back, sleep, 1.3)],
                None => [(wake, sleep, 1.0), (sleep, sleep, 0.0)],
            };
            for (from, until, level) in home_spans {
                let mut hour = from;
                while hour < until {
                    let length = (until - hour).min(0.5);
                    let noise = (0.8 * rng.sample::<f64, _>(StandardNormal) - 0.32).exp();
                    add(at(hour), length * HOUR_S, self.presence_kw * level * noise);
                    hour += 0.5;
                }
            }
            // Kettle and coffee: a few short bursts while people are up.
            let boils = Poisson::new(3.0).map_or(3, |p| p.sample(rng) as usize);
            for _ in 0..boils {
                let hour = if rng.random_bool(0.4) {
                    wake + rng.random_range(0.0..0.8)
                } else {
                    rng.random_range(home_from..sleep.max(home_from + 0.1))
                };
                add(at(hour), rng.random_range(120.0..300.0), self.kettle_kw);
            }
            // Dinner most days, lunch on some free days.
            if rng.random_bool(0.85) {
                let start = around(rng, home_from.max(17.0) + 0.7, 0.4);
                add(
                    at(start),
                    rng.random_range(20.0..70.0) * 60.0,
                    self.cooking_kw,
                );
                if self.dishwasher && rng.random_bool(0.6) {
                    add(at(start + rng.random_range(1.5..3.0)), 5400.0, 1.1);
                }
            }
            if out.is_none() && rng.random_bool(0.5) {
                add(
                    at(around(rng, 12.5, 0.5)),
                    rng.random_range(15.0..45.0) * 60.0,
                    self.cooking_kw,
                );
            }
            if rng.random_bool((self.washer_per_week / 7.0).min(1.0)) {
                let start = rng.random_range(home_from..sleep.max(home_from + 0.1));
                add(at(start), 5400.0, rng.random_range(0.5..1.0));
            }
            // The car comes home and charges until its energy is back.
            if let Some((charger_kw, share)) = self.ev
                && rng.random_bool(share)
            {
                let kwh = rng.random_range(4.0..30.0);
                let plug_in = match out {
                    Some((_, back)) => back + rng.random_range(0.0..0.5),
                    None => around(rng, 18.0, 2.0),
                };
                add(at(plug_in), kwh / charger_kw * HOUR_S, charger_kw);
            }
            date = next_day(date);
            day_index += 1;
        }
        // Always-on load and the heat pump, step by step.
        let step_h = step_s as f64 / HOUR_S;
        let mut cycling = 0.0f64;
        for (i, (energy, &temperature)) in energy_kwh.iter_mut().zip(temperature_c).enumerate() {
            let fridge = 0.5 + 0.5 * (TAU * i as f64 * step_h / 1.3).sin().abs();
            *energy += (self.base_kw + 0.05 * fridge) * step_h;
            if let Some(kw_per_k) = self.heat_pump_kw_per_k {
                let demand = (HEAT_PUMP_BALANCE_C - temperature).max(0.0) * kw_per_k;
                // Compressor cycling and defrosts: a persistent random modulation of the demand.
                cycling = 0.6 * cycling + 0.8 * rng.sample::<f64, _>(StandardNormal);
                *energy += (demand * (1.0 + 0.6 * cycling)).max(0.0) * step_h;
            }
        }
        energy_kwh.into_iter().map(|kwh| kwh / step_h).collect()
    }
}

/// `mean` plus normal noise of `sd`.
fn around(rng: &mut impl Rng, mean: f64, sd: f64) -> f64 {
    mean + sd * rng.sample::<f64, _>(StandardNormal)
}

fn next_day(date: NaiveDate) -> NaiveDate {
    date.succ_opt().unwrap_or(date)
}

fn local_midnight_unix_s(tz: chrono_tz::Tz, date: NaiveDate) -> i64 {
    use chrono::{Offset, TimeZone};
    let noon = date.and_hms_opt(12, 0, 0).unwrap_or_default();
    let offset_s = tz
        .offset_from_local_datetime(&noon)
        .earliest()
        .map_or(0, |o| i64::from(o.fix().local_minus_utc()));
    date.and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp()
        - offset_s
}

/// Adds `kw` over `[from_s, from_s + duration_s)` to the steps it overlaps, as energy.
fn spread(
    energy_kwh: &mut [f64],
    start_s: i64,
    step_s: i64,
    from_s: f64,
    duration_s: f64,
    kw: f64,
) {
    if duration_s <= 0.0 || kw <= 0.0 {
        return;
    }
    let (start, step) = (start_s as f64, step_s as f64);
    let until_s = from_s + duration_s;
    let mut t = from_s.max(start);
    while t < until_s {
        let index = ((t - start) / step).floor();
        if index < 0.0 || index as usize >= energy_kwh.len() {
            return;
        }
        let step_end = start + (index + 1.0) * step;
        let slice_end = step_end.min(until_s);
        energy_kwh[index as usize] += kw * (slice_end - t) / HOUR_S;
        t = slice_end;
    }
}
