//! The byte form of a day of plain (unmasked) bids, as a plain market receives them: per hour
//! a step count (`u16`), then per step side (`u8`: 0 buy, 1 sell), level (`u16`) and quantity
//! (`u32`, Wh), little-endian. Steps are canonical: sorted by side (buy first) then level, one per
//! side and level, no zero quantity; so one book has exactly one encoding (what an agent signs is
//! what the market clears). Decoding checks every field, refuses other forms and never panics.

use crate::book::{HourBids, Order, Side};
use crate::error::MarketError;

const STEP_BYTES: usize = 7;

pub fn encode_day_bids(day: &[HourBids]) -> Vec<u8> {
    let mut out = Vec::with_capacity(day.len() * (2 + 4 * STEP_BYTES));
    for hour in day {
        let steps = hour.steps();
        out.extend_from_slice(&u16::try_from(steps.len()).unwrap_or(u16::MAX).to_le_bytes());
        for step in steps.iter().take(usize::from(u16::MAX)) {
            out.push(u8::from(step.side == Side::Sell));
            out.extend_from_slice(&step.level.to_le_bytes());
            out.extend_from_slice(&step.quantity_wh.to_le_bytes());
        }
    }
    out
}

/// Decodes `hours` hours of agent `agent`'s bids on a ladder of `levels` levels.
pub fn decode_day_bids(
    bytes: &[u8],
    hours: usize,
    levels: u16,
    agent: usize,
) -> Result<Vec<HourBids>, MarketError> {
    let mut rest = bytes;
    let mut take = |n: usize, hour: usize| -> Result<&[u8], MarketError> {
        if rest.len() < n {
            return Err(MarketError::InvalidBid {
                agent,
                hour,
                reason: format!("message ends early ({} of {} bytes left)", rest.len(), n),
            });
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut day = Vec::with_capacity(hours);
    for hour in 0..hours {
        let count = take(2, hour)?;
        let count = usize::from(u16::from_le_bytes([count[0], count[1]]));
        let mut orders = Vec::with_capacity(count);
        for _ in 0..count {
            let s = take(STEP_BYTES, hour)?;
            let side = match s[0] {
                0 => Side::Buy,
                1 => Side::Sell,
                other => {
                    return Err(MarketError::InvalidBid {
                        agent,
                        hour,
                        reason: format!("side byte {other} is neither buy (0) nor sell (1)"),
                    });
                }
            };
            orders.push(Order {
                side,
                level: u16::from_le_bytes([s[1], s[2]]),
                quantity_wh: u32::from_le_bytes([s[3], s[4], s[5], s[6]]),
            });
        }
        let bids = HourBids::new(orders.iter().copied(), levels, agent, hour)?;
        if bids.steps() != orders.as_slice() {
            return Err(MarketError::InvalidBid {
                agent,
                hour,
                reason: "steps are not canonical: one per side and level, sorted by side (buy \
                         first) then level, no zero quantity"
                    .into(),
            });
        }
        day.push(bids);
    }
    if !rest.is_empty() {
        return Err(MarketError::InvalidBid {
            agent,
            hour: hours,
            reason: format!("{} bytes after the last hour", rest.len()),
        });
    }
    Ok(day)
}
