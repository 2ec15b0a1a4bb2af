//! The public price ladder every bid is placed on.
//!
//! Prices are in currency per kWh. Level `k` of `levels` is `floor + k * step`, with
//! `step = (ceiling - floor) / (levels - 1)`. A buyer's limit is rounded down to the ladder and
//! a seller's ask up, so rounding never makes anyone trade at a price they refused; with the
//! default ladder (0 to 0.51 per kWh, 256 levels) the resolution is 0.002 per kWh.

use serde::{Deserialize, Serialize};

use crate::error::{MarketError, config_error};

/// Most levels a ladder may have: private bids carry two words per level and hour.
pub const MAX_LEVELS: u16 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceLadder {
    pub floor: f64,
    pub ceiling: f64,
    pub levels: u16,
}

impl Default for PriceLadder {
    fn default() -> Self {
        Self {
            floor: 0.0,
            ceiling: 0.51,
            levels: 256,
        }
    }
}

impl PriceLadder {
    pub fn new(floor: f64, ceiling: f64, levels: u16) -> Result<Self, MarketError> {
        let ladder = Self {
            floor,
            ceiling,
            levels,
        };
        ladder.validate()?;
        Ok(ladder)
    }

    pub fn validate(&self) -> Result<(), MarketError> {
        if !self.floor.is_finite() {
            return Err(config_error("ladder.floor", "must be a finite price"));
        }
        if !(self.ceiling.is_finite() && self.ceiling > self.floor) {
            return Err(config_error(
                "ladder.ceiling",
                format!("must be finite and above the floor {}", self.floor),
            ));
        }
        if !(2..=MAX_LEVELS).contains(&self.levels) {
            return Err(config_error(
                "ladder.levels",
                format!("must lie in 2..={MAX_LEVELS}, got {}", self.levels),
            ));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        usize::from(self.levels)
    }

    pub fn is_empty(&self) -> bool {
        self.levels == 0
    }

    /// Price difference between neighbouring levels.
    pub fn step(&self) -> f64 {
        (self.ceiling - self.floor) / f64::from(self.levels - 1)
    }

    /// The price of `level`.
    pub fn price(&self, level: u16) -> f64 {
        self.floor + f64::from(level) * self.step()
    }

    fn position(&self, price: f64) -> f64 {
        ((price - self.floor) / self.step()).clamp(0.0, f64::from(self.levels - 1))
    }

    /// The highest level whose price is at most `price` (a buyer's limit), clamped to the ladder.
    /// A tolerance of 1e-9 levels keeps prices that sit on a level on it.
    pub fn level_at_or_below(&self, price: f64) -> u16 {
        (self.position(price) + 1e-9).floor() as u16
    }

    /// The lowest level whose price is at least `price` (a seller's ask), clamped to the ladder.
    pub fn level_at_or_above(&self, price: f64) -> u16 {
        (self.position(price) - 1e-9).ceil() as u16
    }
}
