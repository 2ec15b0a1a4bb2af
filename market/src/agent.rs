//! Agents: a site's day-ahead position from its forecast, its battery plan, and its bids.

use serde::{Deserialize, Serialize};

use crate::battery::{BatterySchedule, BatterySpec, schedule};
use crate::book::{HourBids, Order, Side};
use crate::config::{BidStrategy, MarketConfig};
use crate::error::MarketError;
use crate::forecast::DayForecast;

/// One market participant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub name: String,
    pub battery: Option<BatterySpec>,
    /// Where the flexible tranche's private limit sits, in [0, 1]: 0 at the mid price (eager to
    /// trade locally), 1 at the outside option.
    pub limit_draw: f64,
}

/// An agent's plan for one day.
#[derive(Clone, Debug, PartialEq)]
pub struct DayPlan {
    pub bids: Vec<HourBids>,
    pub battery: Option<BatterySchedule>,
}

/// What the agent asks for at `hour` before its battery: the median (naive) or the quantile
/// at the critical ratio (newsvendor).
pub fn target_net_kw(forecast: &DayForecast, hour: usize, config: &MarketConfig) -> f64 {
    match config.bidding.strategy {
        BidStrategy::Naive => forecast.median(hour),
        BidStrategy::Newsvendor => forecast.quantile(config.critical_ratio(hour), hour),
    }
}

impl Agent {
    /// Plans a day: the battery schedule against the median forecast and tariffs, then one bid
    /// curve per hour for `bid_scale` times the target position (1 for an honest agent).
    pub fn plan_day(
        &self,
        index: usize,
        forecast: &DayForecast,
        soc_kwh: f64,
        config: &MarketConfig,
        bid_scale: f64,
    ) -> Result<DayPlan, MarketError> {
        let hours = forecast.hours();
        let medians: Vec<f64> = (0..hours).map(|h| forecast.median(h)).collect();
        let prices = config.hour_prices();
        let battery = self
            .battery
            .as_ref()
            .map(|spec| schedule(spec, soc_kwh, &medians, &prices));
        let bids = (0..hours)
            .map(|h| {
                let storage = battery.as_ref().map_or(0.0, |b| b.net_kw(h));
                let position = bid_scale * (target_net_kw(forecast, h, config) + storage);
                self.hour_bids(index, h, position, config)
            })
            .collect::<Result<_, _>>()?;
        Ok(DayPlan { bids, battery })
    }

    /// The bid curve for a position of `position_kwh` (positive: buying): a firm tranche at the
    /// outside option and a flexible one at the agent's private limit.
    pub fn hour_bids(
        &self,
        index: usize,
        hour: usize,
        position_kwh: f64,
        config: &MarketConfig,
    ) -> Result<HourBids, MarketError> {
        let wh = (position_kwh * 1000.0).round();
        if !wh.is_finite() || wh.abs() > f64::from(u32::MAX) {
            return Err(MarketError::InvalidBid {
                agent: index,
                hour,
                reason: format!(
                    "position {position_kwh} kWh is not a finite quantity below 4.29 GWh"
                ),
            });
        }
        let total = wh.abs() as u32;
        let flexible = (f64::from(total) * config.bidding.flexible_share).round() as u32;
        let ladder = &config.ladder;
        let (import, feed_in) = (config.import_price(hour % 24), config.tariff.feed_in);
        let mid = 0.5 * (import + feed_in);
        let draw = self.limit_draw.clamp(0.0, 1.0);
        let orders = if wh > 0.0 {
            [
                (
                    Side::Buy,
                    ladder.level_at_or_below(import),
                    total - flexible,
                ),
                (
                    Side::Buy,
                    ladder.level_at_or_below(mid + draw * (import - mid)),
                    flexible,
                ),
            ]
        } else {
            [
                (
                    Side::Sell,
                    ladder.level_at_or_above(feed_in),
                    total - flexible,
                ),
                (
                    Side::Sell,
                    ladder.level_at_or_above(feed_in + draw * (mid - feed_in)),
                    flexible,
                ),
            ]
        };
        HourBids::new(
            orders.into_iter().map(|(side, level, quantity_wh)| Order {
                side,
                level,
                quantity_wh,
            }),
            ladder.levels,
            index,
            hour,
        )
    }
}
