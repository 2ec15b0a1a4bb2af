//! Clearing one hour of a double auction from aggregate supply and demand curves.
//!
//! **Rule.** With `D(k)` the demand at level `k` (Wh bid by buyers whose limit is at least
//! `k`) and `S(k)` the supply (Wh offered by sellers whose ask is at most `k`), the traded
//! volume at `k` is `min(D(k), S(k))`. The market clears at the level that
//! 1. maximizes the traded volume; then, among those,
//! 2. minimizes the surplus `|D(k) - S(k)|`; then
//! 3. takes the middle of what is left (the lower middle of an even count).
//!
//! When the largest volume is zero (the curves do not cross, or one side is empty) there is no
//! price and nothing trades locally.
//!
//! **Allocation** (price priority, pro rata within a level): buyers are filled from the highest
//! limit down, sellers from the lowest ask up, until the volume is reached; at the level where
//! the volume runs out every step gets the same fraction of its quantity. The fill of a level
//! depends only on the aggregate curves, so an agent who knows them (or the published fill
//! ratios) computes its own allocation from its own curve: this is what lets private clearing
//! ([`crate::private`]) give exactly the plain allocation.
//!
//! **Payment.** Uniform price: every filled Wh trades at the clearing level's price.
//! Pay-as-bid: the same allocation, but each step pays (buyers) or receives (sellers) its own
//! limit; the operator keeps the difference, which is never negative.

use serde::{Deserialize, Serialize};

use crate::book::{HourBids, HourBook, Side};
use crate::error::MarketError;
use crate::ladder::PriceLadder;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pricing {
    #[default]
    Uniform,
    PayAsBid,
}

/// Aggregate marginal quantities per level of one hour (Wh): what the whole book offers at
/// exactly that limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateCurves {
    pub buy: Vec<u64>,
    pub sell: Vec<u64>,
}

impl AggregateCurves {
    pub fn zero(levels: usize) -> Self {
        Self {
            buy: vec![0; levels],
            sell: vec![0; levels],
        }
    }

    /// Sums the agents' curves: the plain path.
    pub fn from_book(book: &HourBook, levels: usize) -> Self {
        let mut curves = Self::zero(levels);
        for bids in &book.bids {
            curves.add(bids);
        }
        curves
    }

    pub fn add(&mut self, bids: &HourBids) {
        for step in bids.steps() {
            let side = match step.side {
                Side::Buy => &mut self.buy,
                Side::Sell => &mut self.sell,
            };
            side[usize::from(step.level)] += u64::from(step.quantity_wh);
        }
    }

    /// `D(k)` for every level: demand at or above each level.
    pub fn demand(&self) -> Vec<u64> {
        let mut out = vec![0u64; self.buy.len()];
        let mut running = 0u64;
        for k in (0..self.buy.len()).rev() {
            running += self.buy[k];
            out[k] = running;
        }
        out
    }

    /// `S(k)` for every level: supply at or below each level.
    pub fn supply(&self) -> Vec<u64> {
        let mut running = 0u64;
        self.sell
            .iter()
            .map(|q| {
                running += q;
                running
            })
            .collect()
    }
}

/// The outcome of one hour: price, volume and the fill ratio of every level on each side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HourClearing {
    /// The clearing level, `None` when nothing trades.
    pub level: Option<u16>,
    /// Its price (currency per kWh), `None` when nothing trades.
    pub price: Option<f64>,
    pub volume_wh: u64,
    /// Fraction of each buy level's quantity that is filled (0 where nothing is bid).
    pub buy_fill: Vec<f64>,
    pub sell_fill: Vec<f64>,
}

impl HourClearing {
    /// Clears `curves` on `ladder` (see the module docs for the rule).
    pub fn clear(curves: &AggregateCurves, ladder: &PriceLadder) -> Result<Self, MarketError> {
        let n = ladder.len();
        if curves.buy.len() != n || curves.sell.len() != n {
            return Err(MarketError::Inputs(format!(
                "curves of {} and {} levels for a ladder of {n}",
                curves.buy.len(),
                curves.sell.len()
            )));
        }
        let demand = curves.demand();
        let supply = curves.supply();
        let volume = |k: usize| demand[k].min(supply[k]);
        let best = (0..n).map(volume).max().unwrap_or(0);
        if best == 0 {
            return Ok(Self {
                level: None,
                price: None,
                volume_wh: 0,
                buy_fill: vec![0.0; n],
                sell_fill: vec![0.0; n],
            });
        }
        let surplus = |k: usize| demand[k].abs_diff(supply[k]);
        let plateau: Vec<usize> = (0..n).filter(|&k| volume(k) == best).collect();
        let least = plateau.iter().map(|&k| surplus(k)).min().unwrap_or(0);
        let candidates: Vec<usize> = plateau
            .into_iter()
            .filter(|&k| surplus(k) == least)
            .collect();
        let level = candidates[(candidates.len() - 1) / 2];
        let mut buy_fill = vec![0.0; n];
        let mut remaining = best;
        for k in (level..n).rev() {
            let filled = remaining.min(curves.buy[k]);
            if curves.buy[k] > 0 {
                buy_fill[k] = filled as f64 / curves.buy[k] as f64;
            }
            remaining -= filled;
        }
        let mut sell_fill = vec![0.0; n];
        let mut remaining = best;
        for (fill, &offered) in sell_fill.iter_mut().zip(&curves.sell).take(level + 1) {
            let filled = remaining.min(offered);
            if offered > 0 {
                *fill = filled as f64 / offered as f64;
            }
            remaining -= filled;
        }
        let level = u16::try_from(level).map_err(|_| MarketError::Inputs("level".into()))?;
        Ok(Self {
            level: Some(level),
            price: Some(ladder.price(level)),
            volume_wh: best,
            buy_fill,
            sell_fill,
        })
    }

    /// What one agent's curve gets: computed from the published fill ratios and the agent's own
    /// bids only, by the agent itself in private clearing.
    pub fn allocate(&self, bids: &HourBids, ladder: &PriceLadder, pricing: Pricing) -> Allocation {
        let mut out = Allocation::default();
        for step in bids.steps() {
            let level = usize::from(step.level);
            let (ratio, bought) = match step.side {
                Side::Buy => (self.buy_fill.get(level).copied().unwrap_or(0.0), true),
                Side::Sell => (self.sell_fill.get(level).copied().unwrap_or(0.0), false),
            };
            let kwh = f64::from(step.quantity_wh) * ratio / 1000.0;
            if kwh == 0.0 {
                continue;
            }
            let price = match (pricing, self.price) {
                (Pricing::Uniform, Some(p)) => p,
                _ => ladder.price(step.level),
            };
            // Gains from trade are measured against each step's own limit whatever the rule.
            let limit = ladder.price(step.level);
            if bought {
                out.bought_kwh += kwh;
                out.paid += kwh * price;
                out.value += kwh * limit;
            } else {
                out.sold_kwh += kwh;
                out.received += kwh * price;
                out.value -= kwh * limit;
            }
        }
        out
    }
}

/// One agent's share of an hour's clearing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub bought_kwh: f64,
    pub sold_kwh: f64,
    /// Paid for what it bought locally.
    pub paid: f64,
    /// Received for what it sold locally.
    pub received: f64,
    /// Limit value of its buys minus limit value of its sales: its part of the gains from trade
    /// once payments are netted out across the market.
    pub value: f64,
}

impl Allocation {
    /// Net local energy, kWh (positive: bought).
    pub fn net_kwh(&self) -> f64 {
        self.bought_kwh - self.sold_kwh
    }
}

/// Plain clearing of one hour: the aggregate curves summed in the clear, then the same rule.
pub fn clear_hour(
    book: &HourBook,
    ladder: &PriceLadder,
    pricing: Pricing,
) -> Result<(HourClearing, Vec<Allocation>), MarketError> {
    let curves = AggregateCurves::from_book(book, ladder.len());
    let clearing = HourClearing::clear(&curves, ladder)?;
    let allocations = book
        .bids
        .iter()
        .map(|b| clearing.allocate(b, ladder, pricing))
        .collect();
    Ok((clearing, allocations))
}

/// A day cleared plainly: every hour's clearing and each agent's allocations.
#[derive(Clone, Debug, PartialEq)]
pub struct ClearedDay {
    pub clearings: Vec<HourClearing>,
    /// `[agent][hour]`.
    pub allocations: Vec<Vec<Allocation>>,
}

/// Plain clearing of a day of bids (`days[agent][hour]`, every agent the same hours), summing
/// the curves straight from the agents' bids.
pub fn clear_day(
    days: &[Vec<HourBids>],
    ladder: &PriceLadder,
    pricing: Pricing,
) -> Result<ClearedDay, MarketError> {
    let hours = days.first().map_or(0, Vec::len);
    if let Some(a) = days.iter().position(|d| d.len() != hours) {
        return Err(MarketError::Inputs(format!(
            "agent {a} bids for {} hours, agent 0 for {hours}",
            days[a].len()
        )));
    }
    let mut out = ClearedDay {
        clearings: Vec::with_capacity(hours),
        allocations: vec![Vec::with_capacity(hours); days.len()],
    };
    for h in 0..hours {
        let mut curves = AggregateCurves::zero(ladder.len());
        for day in days {
            curves.add(&day[h]);
        }
        let clearing = HourClearing::clear(&curves, ladder)?;
        for (allocations, day) in out.allocations.iter_mut().zip(days) {
            allocations.push(clearing.allocate(&day[h], ladder, pricing));
        }
        out.clearings.push(clearing);
    }
    Ok(out)
}
