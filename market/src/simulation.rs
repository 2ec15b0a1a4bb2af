//! The agent-based simulation: every day, agents plan and bid from a forecast source, the
//! market clears (plainly or privately), and each agent is settled on its actual telemetry.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::agent::Agent;
use crate::book::HourBids;
use crate::clearing::{Allocation, HourClearing, clear_day};
use crate::config::{HOURS, MarketConfig};
use crate::error::MarketError;
use crate::forecast::DayForecast;
use crate::inputs::{ForecastSource, MarketInputs, MeteredDay};
use crate::outcome::{SourceOutcome, cvar};
use crate::private::{PrivateRound, PrivateTimings, clear_day_private};
use crate::scenario::Scenario;

/// Tolerance of the energy balance, kWh.
const BALANCE_TOLERANCE: f64 = 1e-6;

/// Plain or private clearing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearingMode {
    #[default]
    Plain,
    /// Bids through secure aggregation; every day is also cleared plainly and compared.
    Private,
}

/// The private rounds of a run, summed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PrivateSummary {
    pub rounds: usize,
    /// Days whose private clearing differed from the plain one (prices or allocations).
    pub mismatches: usize,
    pub timings: PrivateTimings,
}

#[derive(Clone, Debug, Serialize)]
pub struct MarketReport {
    pub scenario: Scenario,
    pub mode: ClearingMode,
    pub days: usize,
    pub agents: Vec<String>,
    pub battery_agents: usize,
    pub sources: Vec<SourceOutcome>,
    pub private: Option<PrivateSummary>,
}

/// The agents of `inputs` under `config`: batteries spread by share and sized on each site's
/// mean absolute net load, private limits drawn from the seed.
pub fn build_agents(
    inputs: &MarketInputs,
    config: &MarketConfig,
) -> Result<Vec<Agent>, MarketError> {
    let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
    inputs
        .agents
        .iter()
        .enumerate()
        .map(|(i, series)| {
            let (mut sum, mut n) = (0.0, 0usize);
            for day in series.days.iter().flatten() {
                for h in 0..HOURS {
                    sum += day.net_kw(h).abs();
                    n += 1;
                }
            }
            let battery = if config.has_battery(i) && n > 0 {
                Some(config.battery_spec(sum / n as f64)?)
            } else {
                None
            };
            Ok(Agent {
                name: series.name.clone(),
                battery,
                limit_draw: rng.random_range(0.0..1.0),
            })
        })
        .collect()
}

/// Runs every source of `inputs` plus perfect foresight through the market.
pub fn simulate(
    inputs: &MarketInputs,
    config: &MarketConfig,
    scenario: Scenario,
    mode: ClearingMode,
) -> Result<MarketReport, MarketError> {
    config.validate()?;
    inputs.validate()?;
    let agents = build_agents(inputs, config)?;
    let days = inputs.day_starts.len();
    let mut actual = inputs.agents.clone();
    for (a, series) in actual.iter_mut().enumerate() {
        for (d, day) in series.days.iter_mut().enumerate() {
            if let Some(m) = day {
                scenario.apply_weather(a, d, days, m);
            }
        }
    }
    let perfect = ForecastSource::perfect(&actual);
    let run = Run {
        config,
        agents: &agents,
        actual: &actual,
        fallback: inputs.fallback.map(|f| &inputs.sources[f]),
        cut_off: scenario.cut_off(agents.len(), config.seed),
        bid_scales: scenario.bid_scales(agents.len(), config.seed),
    };
    let mut private = (mode == ClearingMode::Private).then(PrivateSummary::default);
    let sources = inputs
        .sources
        .iter()
        .chain(std::iter::once(&perfect))
        .map(|source| run.source(source, private.as_mut()))
        .collect::<Result<_, _>>()?;
    Ok(MarketReport {
        scenario,
        mode,
        days,
        agents: agents.iter().map(|a| a.name.clone()).collect(),
        battery_agents: agents.iter().filter(|a| a.battery.is_some()).count(),
        sources,
        private,
    })
}

struct Run<'a> {
    config: &'a MarketConfig,
    agents: &'a [Agent],
    actual: &'a [crate::inputs::AgentSeries],
    fallback: Option<&'a ForecastSource>,
    cut_off: Vec<bool>,
    bid_scales: Vec<f64>,
}

/// One agent's day as settled.
struct Settled {
    imbalance_kwh: [f64; HOURS],
    penalty: f64,
    cost: f64,
}

impl Run<'_> {
    /// The forecast agent `a` bids on for day `d`, and whether it is the fallback.
    fn forecast<'s>(
        &'s self,
        source: &'s ForecastSource,
        a: usize,
        d: usize,
    ) -> (Option<&'s DayForecast>, bool) {
        let own = (!self.cut_off[a])
            .then(|| source.forecasts[a][d].as_ref())
            .flatten();
        match own {
            Some(f) => (Some(f), false),
            None => (self.fallback.and_then(|f| f.forecasts[a][d].as_ref()), true),
        }
    }

    fn source(
        &self,
        source: &ForecastSource,
        mut private: Option<&mut PrivateSummary>,
    ) -> Result<SourceOutcome, MarketError> {
        let n = self.agents.len();
        let days = self.actual[0].days.len();
        let mut soc: Vec<f64> = self
            .agents
            .iter()
            .map(|a| a.battery.map_or(0.0, |b| b.initial_soc * b.capacity_kwh))
            .collect();
        let mut out = SourceOutcome {
            source: source.name.clone(),
            imbalance_cost_per_agent: vec![0.0; n],
            ..SourceOutcome::default()
        };
        let (mut pv_total, mut export_total, mut priced_volume) = (0.0, 0.0, 0.0);
        for d in 0..days {
            let mut bids: Vec<Vec<HourBids>> = vec![vec![HourBids::default(); HOURS]; n];
            let mut batteries = vec![None; n];
            for (a, agent) in self.agents.iter().enumerate() {
                if self.actual[a].days[d].is_none() {
                    continue;
                }
                let (forecast, fell_back) = self.forecast(source, a, d);
                out.fallbacks += usize::from(fell_back);
                let zero = DayForecast::point(vec![0.0; HOURS]);
                let plan = agent.plan_day(
                    a,
                    forecast.unwrap_or(&zero),
                    soc[a],
                    self.config,
                    self.bid_scales[a],
                )?;
                bids[a] = plan.bids;
                batteries[a] = plan.battery;
            }
            let (clearings, allocations) = self.clear(&bids, d, private.as_deref_mut())?;
            let mut day_penalty = 0.0;
            let mut hourly_net = [0.0f64; HOURS];
            let mut hourly_imbalance = [0.0f64; HOURS];
            for a in 0..n {
                let Some(metered) = &self.actual[a].days[d] else {
                    continue;
                };
                if let (Some(schedule), Some(spec)) = (&batteries[a], &self.agents[a].battery) {
                    schedule.check(spec, a)?;
                    soc[a] = schedule.final_soc_kwh();
                }
                let settled =
                    self.settle(a, metered, &bids[a], &allocations[a], batteries[a].as_ref())?;
                day_penalty += settled.penalty;
                out.imbalance_cost_per_agent[a] += settled.penalty;
                out.total_cost += settled.cost;
                for h in 0..HOURS {
                    let storage = batteries[a].as_ref().map_or(0.0, |b| b.net_kw(h));
                    hourly_net[h] += metered.net_kw(h) + storage;
                    hourly_imbalance[h] += settled.imbalance_kwh[h];
                    out.imbalance_kwh += settled.imbalance_kwh[h].abs();
                    pv_total += metered.pv_kw[h];
                    let position = bids[a][h].position_kwh();
                    out.bought_kwh += position.max(0.0);
                    out.sold_kwh += (-position).max(0.0);
                    out.surplus += allocations[a][h].value;
                }
            }
            for (h, clearing) in clearings.iter().enumerate() {
                check_market_balance(&allocations, h)?;
                let volume = clearing.volume_wh as f64 / 1000.0;
                out.local_traded_kwh += volume;
                if let Some(p) = clearing.price {
                    priced_volume += p * volume;
                }
                out.hourly_price.push(clearing.price);
                out.hourly_imbalance_kwh.push(hourly_imbalance[h]);
                out.grid_import_peak_kw = out.grid_import_peak_kw.max(hourly_net[h]);
                export_total += (-hourly_net[h]).max(0.0);
            }
            out.imbalance_cost += day_penalty;
            out.daily_imbalance_cost.push(day_penalty);
        }
        out.mean_clearing_price =
            (out.local_traded_kwh > 0.0).then(|| priced_volume / out.local_traded_kwh);
        out.pv_consumed_locally = if pv_total > 0.0 {
            1.0 - (export_total / pv_total).min(1.0)
        } else {
            0.0
        };
        out.cvar95_daily_imbalance_cost = cvar(&out.daily_imbalance_cost, 0.95);
        Ok(out)
    }

    /// Clears day `d`: per hour plainly, or in one private round checked against the plain one.
    fn clear(
        &self,
        bids: &[Vec<HourBids>],
        d: usize,
        private: Option<&mut PrivateSummary>,
    ) -> Result<(Vec<HourClearing>, Vec<Vec<Allocation>>), MarketError> {
        let plain = clear_day(bids, &self.config.ladder, self.config.pricing)?;
        if let Some(summary) = private {
            let round = PrivateRound {
                seed: self.config.seed ^ (d as u64) << 20,
                ..PrivateRound::default()
            };
            let day = clear_day_private(bids, &self.config.ladder, self.config.pricing, &round)?;
            summary.rounds += 1;
            let t = &mut summary.timings;
            t.setup += day.timings.setup;
            t.masking += day.timings.masking;
            t.single_masking += day.timings.single_masking;
            t.unmasking += day.timings.unmasking;
            t.clearing += day.timings.clearing;
            summary.mismatches += usize::from(!day.equals(&plain));
            let private_allocations = day
                .allocations
                .into_iter()
                .map(|a| a.unwrap_or_else(|| vec![Allocation::default(); HOURS]))
                .collect();
            return Ok((day.clearings, private_allocations));
        }
        Ok((plain.clearings, plain.allocations))
    }

    /// Settles agent `a`'s day: local fills, the rest with the grid at the tariffs, and the
    /// gap between actual and position at the imbalance prices; checks the energy balance.
    fn settle(
        &self,
        a: usize,
        metered: &MeteredDay,
        bids: &[HourBids],
        allocations: &[Allocation],
        battery: Option<&crate::battery::BatterySchedule>,
    ) -> Result<Settled, MarketError> {
        let c = self.config;
        let mut settled = Settled {
            imbalance_kwh: [0.0; HOURS],
            penalty: 0.0,
            cost: 0.0,
        };
        for h in 0..HOURS {
            let position = bids[h].position_kwh();
            let local = &allocations[h];
            let grid = position - local.net_kwh();
            let import = c.import_price(h);
            let grid_cost = grid
                * if grid >= 0.0 {
                    import
                } else {
                    c.tariff.feed_in
                };
            let storage = battery.map_or(0.0, |b| b.net_kw(h));
            let consumed = metered.load_kw[h] + storage.max(0.0);
            let supplied = metered.pv_kw[h] + (-storage).max(0.0);
            let imbalance = consumed - supplied - position;
            let (settlement, penalty) = if imbalance >= 0.0 {
                (
                    imbalance * c.imbalance.short_price,
                    imbalance * c.short_penalty(h),
                )
            } else {
                (
                    imbalance * c.imbalance.long_price,
                    -imbalance * c.long_penalty(),
                )
            };
            // Every kWh consumed is supplied by PV, storage, the local market, the grid or the
            // imbalance settlement.
            let gap = consumed - (supplied + local.bought_kwh - local.sold_kwh + grid + imbalance);
            if gap.abs() > BALANCE_TOLERANCE || !gap.is_finite() {
                return Err(MarketError::EnergyBalance {
                    agent: a,
                    hour: h,
                    gap_kwh: gap,
                });
            }
            settled.imbalance_kwh[h] = imbalance;
            settled.penalty += penalty;
            settled.cost += local.paid - local.received + grid_cost + settlement;
        }
        Ok(settled)
    }
}

/// Local buys and sales of one hour must match: the market is closed.
fn check_market_balance(allocations: &[Vec<Allocation>], h: usize) -> Result<(), MarketError> {
    let (bought, sold) = allocations.iter().fold((0.0, 0.0), |(b, s), a| {
        (b + a[h].bought_kwh, s + a[h].sold_kwh)
    });
    let gap = bought - sold;
    if gap.abs() > BALANCE_TOLERANCE * (1.0 + bought) {
        return Err(MarketError::EnergyBalance {
            agent: usize::MAX,
            hour: h,
            gap_kwh: gap,
        });
    }
    Ok(())
}
