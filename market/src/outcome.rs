//! What a forecast source achieved in the market, and the statistics behind it.

use serde::Serialize;

/// Results of one forecast source over the simulated days.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceOutcome {
    pub source: String,
    /// Imbalance penalties: short energy times (short price - import tariff) plus long energy
    /// times (feed-in - long price); zero exactly when every position was met.
    pub imbalance_cost: f64,
    pub imbalance_cost_per_agent: Vec<f64>,
    /// Absolute imbalance energy, kWh.
    pub imbalance_kwh: f64,
    /// Everything the agents paid, net: local market, grid at the tariffs, imbalance settlement.
    pub total_cost: f64,
    /// Energy bought day-ahead (locally and from the grid), kWh.
    pub bought_kwh: f64,
    pub sold_kwh: f64,
    /// Energy traded between agents in the local market, kWh.
    pub local_traded_kwh: f64,
    /// Volume-weighted mean local clearing price (None if nothing traded).
    pub mean_clearing_price: Option<f64>,
    /// Gains from local trade: buyers' limit value minus sellers' ask value of what matched.
    pub surplus: f64,
    /// Share of the microgrid's PV energy consumed inside it (1 - export / PV).
    pub pv_consumed_locally: f64,
    /// Highest hourly net import of the whole microgrid, kW.
    pub grid_import_peak_kw: f64,
    /// Mean of the worst 5% of days' imbalance cost (the whole microgrid's).
    pub cvar95_daily_imbalance_cost: f64,
    pub daily_imbalance_cost: Vec<f64>,
    /// Clearing price of every simulated hour (None where nothing traded locally).
    pub hourly_price: Vec<Option<f64>>,
    /// Sum of the agents' imbalances every hour, kWh (positive: the microgrid was short).
    pub hourly_imbalance_kwh: Vec<f64>,
    /// Agent-days bid on the fallback source (forecast missing or cut off).
    pub fallbacks: usize,
}

/// Conditional value at risk: the mean of the worst `1 - level` share of `values` (largest
/// first), the boundary value weighted by its fraction.
pub fn cvar(values: &[f64], level: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let tail = ((1.0 - level) * sorted.len() as f64).max(f64::MIN_POSITIVE);
    let (mut weight, mut sum) = (0.0, 0.0);
    for v in sorted {
        let w = (tail - weight).min(1.0);
        if w <= 0.0 {
            break;
        }
        sum += w * v;
        weight += w;
    }
    sum / weight
}
