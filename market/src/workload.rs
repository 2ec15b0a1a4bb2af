//! A deterministic day of realistic books for benchmarks and examples: `agents` sites with a
//! random net position every hour, each bidding the two-tranche curve of [`Agent::hour_bids`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::agent::Agent;
use crate::book::HourBids;
use crate::config::{HOURS, MarketConfig};
use crate::error::MarketError;

/// `days[agent][hour]` for one day; about half the agents buy and half sell each hour.
pub fn random_day(
    agents: usize,
    config: &MarketConfig,
    seed: u64,
) -> Result<Vec<Vec<HourBids>>, MarketError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..agents)
        .map(|a| {
            let agent = Agent {
                name: format!("agent-{a}"),
                battery: None,
                limit_draw: rng.random_range(0.0..1.0),
            };
            let size = rng.random_range(0.5..5.0);
            (0..HOURS)
                .map(|h| agent.hour_bids(a, h, size * rng.random_range(-1.0..1.0), config))
                .collect()
        })
        .collect()
}
