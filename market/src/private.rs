//! Private bids: agents' curves travel only as SecAgg+ masked vectors.
//!
//! Each agent encodes its day of bids as marginal quantities (Wh, one `u32` word each) laid out
//! `[hour][side][level]` (buy side first) and masks the vector in one secure-aggregation round
//! (`crypto::secagg`, the same state machines as model updates). The operator unmasks only the
//! sum: the aggregate curves of every hour. It clears them with [`HourClearing::clear`] and
//! publishes price and fill ratios; each agent computes its own allocation from its own curve
//! ([`HourClearing::allocate`]). Integer sums are exact, so the clearing is the plain one on the
//! same book, bit for bit.
//!
//! **Threat model.** As for model updates (docs/secagg.md): an honest-but-curious operator and
//! fewer than `threshold` colluding neighbours of an agent learn its curve only through the
//! aggregate and its own allocation. Agents that drop before uploading leave the book (clearing
//! runs on the others); agents that drop after uploading stay in it (their masks are removed
//! from the survivors' shares), as they committed their bids.
//!
//! **Bounds.** An agent's quantity at one level is at most `u32::MAX / agents` Wh so that the
//! sum of a level never wraps (4.29 MWh per level and hour for 1,000 agents).

use std::time::{Duration, Instant};

use crypto::secagg::simulation::{Dropout, PreparedRound, SimulationConfig};
use crypto::secagg::{ParticipantId, SecAggParams};
use serde::Serialize;

use crate::book::{HourBids, Side};
use crate::clearing::{AggregateCurves, Allocation, ClearedDay, HourClearing, Pricing};
use crate::error::MarketError;
use crate::ladder::PriceLadder;

/// Fewest agents a private round takes (secure aggregation needs neighbours to mask with).
pub const MIN_PRIVATE_AGENTS: usize = 4;

/// How the secure-aggregation round of one day runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrivateRound {
    pub seed: u64,
    pub dropout: Dropout,
    /// Encode and decode every message as a network would (slower; tests).
    pub through_bytes: bool,
}

/// Where a private day's time went.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PrivateTimings {
    /// Key advertisement and key sharing: independent of the bids, done before gate closure.
    pub setup: Duration,
    /// Every agent masking its vector, in this process (in a deployment each masks its own).
    pub masking: Duration,
    /// One agent masking alone: its share of the latency after gate closure.
    pub single_masking: Duration,
    /// The operator taking the masked vectors, collecting shares and removing the masks.
    pub unmasking: Duration,
    /// Decoding the sum and clearing all hours.
    pub clearing: Duration,
}

/// One private day: the public clearing and each agent's own allocation.
#[derive(Clone, Debug)]
pub struct PrivateDay {
    pub clearings: Vec<HourClearing>,
    /// Per agent, per hour; `None` for an agent whose bids left the book (dropped before upload).
    pub allocations: Vec<Option<Vec<Allocation>>>,
    pub timings: PrivateTimings,
    /// Words of one masked vector.
    pub vector_words: usize,
}

impl PrivateDay {
    /// Whether this day gives exactly the prices and allocations of `plain` (every agent in the
    /// book).
    pub fn equals(&self, plain: &ClearedDay) -> bool {
        self.clearings == plain.clearings
            && self.allocations.len() == plain.allocations.len()
            && self
                .allocations
                .iter()
                .zip(&plain.allocations)
                .all(|(private, plain)| private.as_ref() == Some(plain))
    }
}

/// The vector one agent masks: its marginal quantities, `[hour][side][level]`.
pub fn encode_day(bids: &[HourBids], levels: usize) -> Vec<u32> {
    let mut words = vec![0u32; bids.len() * 2 * levels];
    for (hour, hour_bids) in bids.iter().enumerate() {
        for step in hour_bids.steps() {
            let side = usize::from(step.side == Side::Sell);
            words[(hour * 2 + side) * levels + usize::from(step.level)] = step.quantity_wh;
        }
    }
    words
}

/// The aggregate curves of every hour from the unmasked sum.
pub fn decode_day(
    sum: &[u32],
    hours: usize,
    levels: usize,
) -> Result<Vec<AggregateCurves>, MarketError> {
    if sum.len() != hours * 2 * levels {
        return Err(MarketError::Inputs(format!(
            "an aggregate of {} words for {hours} hours of {levels} levels",
            sum.len()
        )));
    }
    Ok(sum
        .chunks_exact(2 * levels)
        .map(|hour| AggregateCurves {
            buy: hour[..levels].iter().map(|&q| u64::from(q)).collect(),
            sell: hour[levels..].iter().map(|&q| u64::from(q)).collect(),
        })
        .collect())
}

/// Checks that the aggregate of `agents` curves cannot wrap modulo 2^32.
fn check_bounds(days: &[Vec<HourBids>], hours: usize) -> Result<(), MarketError> {
    let limit = u32::MAX / u32::try_from(days.len()).unwrap_or(u32::MAX).max(1);
    for (agent, day) in days.iter().enumerate() {
        if day.len() != hours {
            return Err(MarketError::Inputs(format!(
                "agent {agent} bids for {} hours, the day has {hours}",
                day.len()
            )));
        }
        for (hour, bids) in day.iter().enumerate() {
            if let Some(step) = bids.steps().iter().find(|s| s.quantity_wh > limit) {
                return Err(MarketError::InvalidBid {
                    agent,
                    hour,
                    reason: format!(
                        "{} Wh at one level exceeds the private bound of {limit} Wh for {} agents",
                        step.quantity_wh,
                        days.len()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Clears one day of bids (`days[agent][hour]`) through a secure-aggregation round.
pub fn clear_day_private(
    days: &[Vec<HourBids>],
    ladder: &PriceLadder,
    pricing: Pricing,
    round: &PrivateRound,
) -> Result<PrivateDay, MarketError> {
    if days.len() < MIN_PRIVATE_AGENTS {
        return Err(MarketError::Inputs(format!(
            "private clearing needs at least {MIN_PRIVATE_AGENTS} agents, got {}",
            days.len()
        )));
    }
    let hours = days[0].len();
    check_bounds(days, hours)?;
    let levels = ladder.len();
    let words = hours * 2 * levels;
    let vector_len = u32::try_from(words)
        .map_err(|_| MarketError::Inputs(format!("{words} words do not fit a round")))?;
    let participants =
        u32::try_from(days.len()).map_err(|_| MarketError::Inputs("too many agents".into()))?;
    let config = SimulationConfig {
        participants,
        params: SecAggParams::suggested(days.len(), vector_len)?,
        dropout: round.dropout,
        seed: round.seed,
        through_bytes: round.through_bytes,
    };
    let started = Instant::now();
    let prepared = PreparedRound::prepare(&config)?;
    let setup = started.elapsed();
    // Only agents still in the round encode their bids; the others never reveal anything.
    let mut inputs = vec![Vec::new(); days.len()];
    for ParticipantId(id) in prepared.uploaders() {
        inputs[id as usize] = encode_day(&days[id as usize], levels);
    }
    let outcome = prepared.mask(&inputs)?.unmask();
    let aggregate = outcome.result?;
    let started = Instant::now();
    let clearings = decode_day(&aggregate.sum, hours, levels)?
        .iter()
        .map(|curves| HourClearing::clear(curves, ladder))
        .collect::<Result<Vec<_>, _>>()?;
    let clearing = started.elapsed();
    let mut allocations = vec![None; days.len()];
    for ParticipantId(id) in &aggregate.contributors {
        let own = &days[*id as usize];
        allocations[*id as usize] = Some(
            clearings
                .iter()
                .zip(own)
                .map(|(c, bids)| c.allocate(bids, ladder, pricing))
                .collect(),
        );
    }
    Ok(PrivateDay {
        clearings,
        allocations,
        timings: PrivateTimings {
            setup,
            masking: outcome.masking,
            single_masking: outcome.single_masking,
            unmasking: outcome.unmasking,
            clearing,
        },
        vector_words: words,
    })
}
