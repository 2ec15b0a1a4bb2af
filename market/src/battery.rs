//! Batteries: limits, and a day-ahead schedule against expected prices.
//!
//! The schedule is a dynamic program over a grid of states of charge: each hour the battery
//! moves to any grid level its power limits allow, and the cost of the hour is the agent's
//! expected net position priced at the import tariff when buying and the feed-in tariff when
//! selling. Charging `e` kWh into the cells draws `e / sqrt(rte)` from the bus; discharging `e`
//! delivers `e * sqrt(rte)`. The day must end at least at the grid level below the state it
//! started from, so a battery never drains itself to win one day.

use serde::{Deserialize, Serialize};

use crate::error::{MarketError, config_error};

/// Grid levels between the minimum and maximum state of charge.
const SOC_STEPS: usize = 40;
/// Slack on limits for floating-point rounding (kW or kWh).
const TOLERANCE: f64 = 1e-9;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatterySpec {
    pub capacity_kwh: f64,
    pub max_charge_kw: f64,
    pub max_discharge_kw: f64,
    /// Energy out over energy in, one full cycle.
    pub round_trip_efficiency: f64,
    /// Bounds of the state of charge, fractions of capacity.
    pub soc_min: f64,
    pub soc_max: f64,
    pub initial_soc: f64,
}

impl BatterySpec {
    /// Checks the limits; errors name the field under `prefix` (e.g. `battery`).
    pub fn validate(&self, prefix: &str) -> Result<(), MarketError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let positive = |v: f64, name: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(config_error(&field(name), format!("must be > 0, got {v}")))
            }
        };
        positive(self.capacity_kwh, "capacity_kwh")?;
        positive(self.max_charge_kw, "max_charge_kw")?;
        positive(self.max_discharge_kw, "max_discharge_kw")?;
        if !(self.round_trip_efficiency > 0.0 && self.round_trip_efficiency <= 1.0) {
            return Err(config_error(
                &field("round_trip_efficiency"),
                format!("must lie in (0, 1], got {}", self.round_trip_efficiency),
            ));
        }
        if !(0.0..1.0).contains(&self.soc_min) {
            return Err(config_error(
                &field("soc_min"),
                format!("must lie in [0, 1), got {}", self.soc_min),
            ));
        }
        if !(self.soc_max > self.soc_min && self.soc_max <= 1.0) {
            return Err(config_error(
                &field("soc_max"),
                format!("must lie in (soc_min, 1], got {}", self.soc_max),
            ));
        }
        if !(self.soc_min..=self.soc_max).contains(&self.initial_soc) {
            return Err(config_error(
                &field("initial_soc"),
                format!(
                    "must lie in [soc_min, soc_max] = [{}, {}], got {}",
                    self.soc_min, self.soc_max, self.initial_soc
                ),
            ));
        }
        Ok(())
    }

    fn efficiency(&self) -> f64 {
        self.round_trip_efficiency.sqrt()
    }

    pub fn min_kwh(&self) -> f64 {
        self.soc_min * self.capacity_kwh
    }

    pub fn max_kwh(&self) -> f64 {
        self.soc_max * self.capacity_kwh
    }

    /// Bus-side power to move the stored energy by `delta_kwh` in one hour: (charge, discharge).
    fn bus_power(&self, delta_kwh: f64) -> (f64, f64) {
        if delta_kwh >= 0.0 {
            (delta_kwh / self.efficiency(), 0.0)
        } else {
            (0.0, -delta_kwh * self.efficiency())
        }
    }
}

/// A day's plan: bus-side charge and discharge power per hour and the stored energy before and
/// after each hour (`soc_kwh` has one more entry than the hours).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatterySchedule {
    pub charge_kw: Vec<f64>,
    pub discharge_kw: Vec<f64>,
    pub soc_kwh: Vec<f64>,
}

impl BatterySchedule {
    /// A battery that stays idle for `hours` at `soc_kwh`.
    pub fn idle(hours: usize, soc_kwh: f64) -> Self {
        Self {
            charge_kw: vec![0.0; hours],
            discharge_kw: vec![0.0; hours],
            soc_kwh: vec![soc_kwh; hours + 1],
        }
    }

    /// Net bus power of hour `h` (positive: the battery draws from the site).
    pub fn net_kw(&self, hour: usize) -> f64 {
        self.charge_kw[hour] - self.discharge_kw[hour]
    }

    pub fn final_soc_kwh(&self) -> f64 {
        self.soc_kwh.last().copied().unwrap_or(0.0)
    }

    /// Checks every hour against `spec`'s limits and the energy bookkeeping.
    pub fn check(&self, spec: &BatterySpec, agent: usize) -> Result<(), MarketError> {
        let fail = |hour: usize, reason: String| MarketError::BatteryLimit {
            agent,
            hour,
            reason,
        };
        let eta = spec.efficiency();
        for hour in 0..self.charge_kw.len() {
            let (c, d) = (self.charge_kw[hour], self.discharge_kw[hour]);
            if c < -TOLERANCE || c > spec.max_charge_kw + TOLERANCE {
                return Err(fail(
                    hour,
                    format!("charges at {c} kW, limit {}", spec.max_charge_kw),
                ));
            }
            if d < -TOLERANCE || d > spec.max_discharge_kw + TOLERANCE {
                return Err(fail(
                    hour,
                    format!("discharges at {d} kW, limit {}", spec.max_discharge_kw),
                ));
            }
            if c > TOLERANCE && d > TOLERANCE {
                return Err(fail(hour, "charges and discharges at once".into()));
            }
            let after = self.soc_kwh[hour + 1];
            if after < spec.min_kwh() - TOLERANCE || after > spec.max_kwh() + TOLERANCE {
                return Err(fail(
                    hour,
                    format!(
                        "stores {after} kWh, bounds [{}, {}]",
                        spec.min_kwh(),
                        spec.max_kwh()
                    ),
                ));
            }
            let expected = self.soc_kwh[hour] + c * eta - d / eta;
            if (after - expected).abs() > 1e-6 {
                return Err(fail(
                    hour,
                    format!("stored energy {after} kWh, bookkeeping says {expected}"),
                ));
            }
        }
        Ok(())
    }
}

/// Expected prices of one hour for scheduling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HourPrices {
    pub import: f64,
    pub feed_in: f64,
}

/// The cheapest feasible schedule for `expected_net_kw` (the site's forecast without the
/// battery) starting from `soc_kwh` (see the module docs).
pub fn schedule(
    spec: &BatterySpec,
    soc_kwh: f64,
    expected_net_kw: &[f64],
    prices: &[HourPrices],
) -> BatterySchedule {
    let hours = expected_net_kw.len().min(prices.len());
    let (lo, hi) = (spec.min_kwh(), spec.max_kwh());
    let start = soc_kwh.clamp(lo, hi);
    let step = (hi - lo) / SOC_STEPS as f64;
    let grid: Vec<f64> = (0..=SOC_STEPS).map(|i| lo + step * i as f64).collect();
    let floor_of_start = ((start - lo) / step + 1e-9).floor() as usize;
    let feasible = |from: f64, to: f64| {
        let (c, d) = spec.bus_power(to - from);
        c <= spec.max_charge_kw + TOLERANCE && d <= spec.max_discharge_kw + TOLERANCE
    };
    let hour_cost = |h: usize, from: f64, to: f64| {
        let (c, d) = spec.bus_power(to - from);
        let position = expected_net_kw[h] + c - d;
        let p = prices[h];
        position * if position >= 0.0 { p.import } else { p.feed_in }
    };
    if hours == 0 {
        return BatterySchedule::idle(0, start);
    }
    // cost_to_go[h][j]: cheapest cost of hours h.. when entering hour h at grid level j.
    let levels = grid.len();
    let mut next_cost: Vec<f64> = (0..levels)
        .map(|j| {
            if j >= floor_of_start {
                0.0
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let mut choice = vec![vec![0usize; levels]; hours];
    for h in (1..hours).rev() {
        let mut cost = vec![f64::INFINITY; levels];
        for i in 0..levels {
            for j in 0..levels {
                if next_cost[j].is_finite() && feasible(grid[i], grid[j]) {
                    let total = hour_cost(h, grid[i], grid[j]) + next_cost[j];
                    if total < cost[i] {
                        cost[i] = total;
                        choice[h][i] = j;
                    }
                }
            }
        }
        next_cost = cost;
    }
    // Hour 0 leaves the (possibly off-grid) starting state; staying put is always feasible.
    let (mut best, mut first) = (f64::INFINITY, None);
    for j in 0..levels {
        if next_cost[j].is_finite() && feasible(start, grid[j]) {
            let total = hour_cost(0, start, grid[j]) + next_cost[j];
            if total < best {
                best = total;
                first = Some(j);
            }
        }
    }
    let Some(mut j) = first else {
        return BatterySchedule::idle(hours, start);
    };
    let mut plan = BatterySchedule {
        charge_kw: Vec::with_capacity(hours),
        discharge_kw: Vec::with_capacity(hours),
        soc_kwh: vec![start],
    };
    let mut from = start;
    for (h, row) in choice.iter().enumerate() {
        if h > 0 {
            j = row[j];
        }
        let to = grid[j];
        let (c, d) = spec.bus_power(to - from);
        plan.charge_kw.push(c);
        plan.discharge_kw.push(d);
        plan.soc_kwh.push(to);
        from = to;
    }
    plan
}
