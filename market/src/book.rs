//! Orders and the per-hour book.
//!
//! An agent's bid for one hour is a step curve on the [`PriceLadder`](crate::PriceLadder): a
//! quantity (whole Wh) at each limit level, per side. [`HourBids`] keeps one entry per (side,
//! level), merged and sorted, which is what both the plain and the private clearing see: an
//! agent's curve is the same object whichever way it travels.

use serde::{Deserialize, Serialize};

use crate::error::MarketError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

/// One step of a bid curve: `quantity_wh` at limit `level` (a buyer pays at most, a seller
/// receives at least, that level's price).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub side: Side,
    pub level: u16,
    pub quantity_wh: u32,
}

/// One agent's bid curve for one hour: merged steps, sorted by side then level, no zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourBids {
    steps: Vec<Order>,
}

impl HourBids {
    /// Merges `orders` (several at one side and level add up) and checks them against a ladder
    /// of `levels` levels.
    pub fn new(
        orders: impl IntoIterator<Item = Order>,
        levels: u16,
        agent: usize,
        hour: usize,
    ) -> Result<Self, MarketError> {
        let mut steps: Vec<Order> = Vec::new();
        for order in orders {
            if order.level >= levels {
                return Err(MarketError::InvalidBid {
                    agent,
                    hour,
                    reason: format!("level {} is off the ladder of {levels} levels", order.level),
                });
            }
            if order.quantity_wh == 0 {
                continue;
            }
            match steps
                .iter_mut()
                .find(|s| s.side == order.side && s.level == order.level)
            {
                Some(step) => {
                    step.quantity_wh =
                        step.quantity_wh
                            .checked_add(order.quantity_wh)
                            .ok_or_else(|| MarketError::InvalidBid {
                                agent,
                                hour,
                                reason: "quantity at one level exceeds 4.29 GWh".into(),
                            })?;
                }
                None => steps.push(order),
            }
        }
        steps.sort_by_key(|s| (s.side == Side::Sell, s.level));
        Ok(Self { steps })
    }

    pub fn steps(&self) -> &[Order] {
        &self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Total quantity offered on `side`, in Wh.
    pub fn total_wh(&self, side: Side) -> u64 {
        self.steps
            .iter()
            .filter(|s| s.side == side)
            .map(|s| u64::from(s.quantity_wh))
            .sum()
    }

    /// Signed position if every step were filled, in kWh (positive: buying).
    pub fn position_kwh(&self) -> f64 {
        (self.total_wh(Side::Buy) as f64 - self.total_wh(Side::Sell) as f64) / 1000.0
    }
}

/// Every agent's bids for one hour (index = agent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HourBook {
    pub bids: Vec<HourBids>,
}
