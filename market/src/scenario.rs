//! Stress scenarios: what goes wrong after the forecasts are issued.
//!
//! Weather scenarios change the *actual* telemetry of the simulated days and leave the
//! forecasts as issued, which is what a surprise does to a day-ahead market. Perfect foresight
//! sees the changed actuals (it stays the zero-imbalance reference).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::inputs::MeteredDay;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    #[default]
    None,
    /// A regional cloud front: for three days from a third into the period, PV falls to 30%
    /// from late morning to mid afternoon, the front reaching agents an hour apart.
    CloudFront,
    /// A heat wave: for four days from mid period, load rises 40% from 11:00 to 21:00 (cooling).
    HeatWave,
    /// 20% of agents stop receiving forecasts and bid on persistence.
    ForecastOutage,
    /// One agent bids three times its forecast position.
    RogueBidder,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::None,
        Scenario::CloudFront,
        Scenario::HeatWave,
        Scenario::ForecastOutage,
        Scenario::RogueBidder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::None => "none",
            Scenario::CloudFront => "cloud-front",
            Scenario::HeatWave => "heat-wave",
            Scenario::ForecastOutage => "forecast-outage",
            Scenario::RogueBidder => "rogue-bidder",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Applies the weather of the scenario to agent `agent`'s metered day `day` of `days`.
    pub fn apply_weather(self, agent: usize, day: usize, days: usize, metered: &mut MeteredDay) {
        let hours = metered.load_kw.len();
        match self {
            Scenario::CloudFront => {
                let start = days / 3;
                if (start..start + 3).contains(&day) {
                    let shift = agent % 4;
                    for h in (9 + shift..15 + shift).filter(|&h| h < hours) {
                        metered.pv_kw[h] *= 0.3;
                    }
                }
            }
            Scenario::HeatWave => {
                let start = days / 2;
                if (start..start + 4).contains(&day) {
                    for h in (11..21).filter(|&h| h < hours) {
                        metered.load_kw[h] *= 1.4;
                    }
                }
            }
            _ => {}
        }
    }

    /// Agents cut off from their forecasts (they bid on the fallback source).
    pub fn cut_off(self, agents: usize, seed: u64) -> Vec<bool> {
        let mut out = vec![false; agents];
        if self == Scenario::ForecastOutage {
            let mut order: Vec<usize> = (0..agents).collect();
            order.shuffle(&mut ChaCha20Rng::seed_from_u64(seed ^ 0x07a6e));
            let count = (0.2 * agents as f64).ceil() as usize;
            for &i in order.iter().take(count) {
                out[i] = true;
            }
        }
        out
    }

    /// Each agent's bid scale: 1, except the rogue bidder's 3.
    pub fn bid_scales(self, agents: usize, seed: u64) -> Vec<f64> {
        let mut out = vec![1.0; agents];
        if self == Scenario::RogueBidder && agents > 0 {
            let rogue = ChaCha20Rng::seed_from_u64(seed ^ 0x709e).random_range(0..agents);
            out[rogue] = 3.0;
        }
        out
    }
}
