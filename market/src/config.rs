//! The market's configuration: tariffs, imbalance prices, ladder, batteries and bidding.
//!
//! Read from TOML with unknown fields refused; every check names the field it rejects
//! (`tariff.feed_in`, `batteries.share`, ...). Anything a file leaves out keeps the value of
//! [`MarketConfig::default`], the built-in microgrid the README's numbers use.

use serde::{Deserialize, Serialize};

use crate::battery::{BatterySpec, HourPrices};
use crate::clearing::Pricing;
use crate::error::{MarketError, config_error};
use crate::ladder::PriceLadder;

/// Hours in a market day.
pub const HOURS: usize = 24;

/// Time-of-use tariffs with the outside grid, currency per kWh, by hour of day (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tariff {
    /// Import price outside the peak hours.
    pub import: f64,
    /// Import price during `peak_hours`.
    pub import_peak: f64,
    pub peak_hours: Vec<u8>,
    /// Price paid for energy fed into the grid.
    pub feed_in: f64,
}

/// Real-time imbalance prices: a site short of its position buys the gap at `short_price`, a
/// site long sells the excess at `long_price`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImbalancePrices {
    pub short_price: f64,
    pub long_price: f64,
}

/// Which agents get a battery and how big: capacity is `hours` of the site's mean absolute
/// net load, power is `c_rate` times capacity per hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatteryFleet {
    /// Share of agents (every k-th by index) that own a battery.
    pub share: f64,
    pub hours: f64,
    pub c_rate: f64,
    pub round_trip_efficiency: f64,
    pub soc_min: f64,
    pub soc_max: f64,
    pub initial_soc: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BidStrategy {
    /// Bid the median forecast.
    Naive,
    /// Bid the forecast quantile at the critical ratio of the imbalance penalties.
    #[default]
    Newsvendor,
}

/// How agents price their bids: a share of each quantity is firm (at the outside option: the
/// import tariff for buyers, feed-in for sellers), the rest at a private limit drawn per agent
/// between the outside option and the mid price. Unfilled quantity goes to the grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bidding {
    pub strategy: BidStrategy,
    pub flexible_share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    pub pricing: Pricing,
    pub seed: u64,
    pub ladder: PriceLadder,
    pub tariff: Tariff,
    pub imbalance: ImbalancePrices,
    pub batteries: BatteryFleet,
    pub bidding: Bidding,
}

impl Default for Tariff {
    fn default() -> Self {
        Self {
            import: 0.25,
            import_peak: 0.40,
            peak_hours: vec![16, 17, 18, 19, 20],
            feed_in: 0.08,
        }
    }
}

impl Default for ImbalancePrices {
    fn default() -> Self {
        Self {
            short_price: 0.50,
            long_price: 0.02,
        }
    }
}

impl Default for BatteryFleet {
    fn default() -> Self {
        Self {
            share: 0.3,
            hours: 2.0,
            c_rate: 0.5,
            round_trip_efficiency: 0.9,
            soc_min: 0.1,
            soc_max: 0.95,
            initial_soc: 0.5,
        }
    }
}

impl Default for Bidding {
    fn default() -> Self {
        Self {
            strategy: BidStrategy::Newsvendor,
            flexible_share: 0.4,
        }
    }
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            pricing: Pricing::Uniform,
            seed: 7,
            ladder: PriceLadder::default(),
            tariff: Tariff::default(),
            imbalance: ImbalancePrices::default(),
            batteries: BatteryFleet::default(),
            bidding: Bidding::default(),
        }
    }
}

impl MarketConfig {
    /// Parses and validates TOML.
    pub fn from_toml(text: &str) -> Result<Self, MarketError> {
        let config: Self =
            toml::from_str(text).map_err(|e| MarketError::ConfigSyntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), MarketError> {
        self.ladder.validate()?;
        let t = &self.tariff;
        let price = |v: f64, field: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(config_error(
                    field,
                    format!("must be a price >= 0, got {v}"),
                ))
            }
        };
        price(t.import, "tariff.import")?;
        price(t.import_peak, "tariff.import_peak")?;
        price(t.feed_in, "tariff.feed_in")?;
        price(self.imbalance.short_price, "imbalance.short_price")?;
        price(self.imbalance.long_price, "imbalance.long_price")?;
        if let Some(h) = t.peak_hours.iter().find(|&&h| usize::from(h) >= HOURS) {
            return Err(config_error(
                "tariff.peak_hours",
                format!("hour {h} is not an hour of the day (0..=23)"),
            ));
        }
        if t.feed_in > t.import.min(t.import_peak) {
            return Err(config_error(
                "tariff.feed_in",
                format!(
                    "{} exceeds the import price {}: the grid would pay to be arbitraged",
                    t.feed_in,
                    t.import.min(t.import_peak)
                ),
            ));
        }
        if self.imbalance.short_price < t.import.max(t.import_peak) {
            return Err(config_error(
                "imbalance.short_price",
                "must be at least the highest import price, or being short would pay",
            ));
        }
        if self.imbalance.long_price > t.feed_in {
            return Err(config_error(
                "imbalance.long_price",
                "must be at most the feed-in price, or being long would pay",
            ));
        }
        let (lo, hi) = (t.feed_in, t.import.max(t.import_peak));
        if self.ladder.floor > lo || self.ladder.ceiling < hi {
            return Err(config_error(
                "ladder",
                format!(
                    "[{}, {}] must cover the tariffs [{lo}, {hi}]",
                    self.ladder.floor, self.ladder.ceiling
                ),
            ));
        }
        let b = &self.batteries;
        if !(0.0..=1.0).contains(&b.share) {
            return Err(config_error(
                "batteries.share",
                format!("must lie in [0, 1], got {}", b.share),
            ));
        }
        if b.share > 0.0 {
            self.battery_spec(1.0)?.validate("batteries")?;
        }
        if !(0.0..=1.0).contains(&self.bidding.flexible_share) {
            return Err(config_error(
                "bidding.flexible_share",
                format!("must lie in [0, 1], got {}", self.bidding.flexible_share),
            ));
        }
        Ok(())
    }

    /// The battery of an agent whose mean absolute net load is `mean_kw`.
    pub fn battery_spec(&self, mean_kw: f64) -> Result<BatterySpec, MarketError> {
        let b = &self.batteries;
        if !(b.hours.is_finite() && b.hours > 0.0) {
            return Err(config_error(
                "batteries.hours",
                format!("must be > 0, got {}", b.hours),
            ));
        }
        if !(b.c_rate.is_finite() && b.c_rate > 0.0) {
            return Err(config_error(
                "batteries.c_rate",
                format!("must be > 0, got {}", b.c_rate),
            ));
        }
        let capacity = b.hours * mean_kw.max(0.1);
        Ok(BatterySpec {
            capacity_kwh: capacity,
            max_charge_kw: b.c_rate * capacity,
            max_discharge_kw: b.c_rate * capacity,
            round_trip_efficiency: b.round_trip_efficiency,
            soc_min: b.soc_min,
            soc_max: b.soc_max,
            initial_soc: b.initial_soc,
        })
    }

    /// Whether agent `index` of `agents` owns a battery: evenly spread, `share` of them.
    pub fn has_battery(&self, index: usize) -> bool {
        let share = self.batteries.share;
        share > 0.0 && ((index as f64 + 1.0) * share).floor() > (index as f64 * share).floor()
    }

    /// Import tariff of hour of day `hour`.
    pub fn import_price(&self, hour: usize) -> f64 {
        if self
            .tariff
            .peak_hours
            .iter()
            .any(|&h| usize::from(h) == hour)
        {
            self.tariff.import_peak
        } else {
            self.tariff.import
        }
    }

    pub fn hour_prices(&self) -> Vec<HourPrices> {
        (0..HOURS)
            .map(|h| HourPrices {
                import: self.import_price(h),
                feed_in: self.tariff.feed_in,
            })
            .collect()
    }

    /// Penalty per kWh of being short at `hour`: what the gap costs above buying it day-ahead.
    pub fn short_penalty(&self, hour: usize) -> f64 {
        self.imbalance.short_price - self.import_price(hour)
    }

    /// Penalty per kWh of being long: what the excess loses against selling it day-ahead.
    pub fn long_penalty(&self) -> f64 {
        self.tariff.feed_in - self.imbalance.long_price
    }

    /// The newsvendor's critical ratio at `hour`: the quantile of net load that minimizes the
    /// expected imbalance cost, `short / (short + long)`.
    pub fn critical_ratio(&self, hour: usize) -> f64 {
        let (short, long) = (self.short_penalty(hour), self.long_penalty());
        if short + long <= 0.0 {
            0.5
        } else {
            short / (short + long)
        }
    }
}
