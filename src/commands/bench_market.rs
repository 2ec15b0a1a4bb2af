//! `gridfed bench market`: clearing a day of 1,000 agents, plain and through secure
//! aggregation of the bids, in one process, with the plain clearing as the baseline measured
//! in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Args;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use market::wire::{decode_day_bids, encode_day_bids};
use market::{
    HOURS, HourBids, MarketConfig, PriceLadder, PrivateRound, clear_day, clear_day_private,
    workload,
};
use rayon::prelude::*;
use serde::Serialize;

#[derive(Args, Debug, Clone)]
pub struct BenchMarketArgs {
    /// Agents bidding in the day cleared.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Price levels of the ladder (bids are two words per level and hour).
    #[arg(long, default_value_t = 256)]
    pub levels: u16,
    /// Repetitions; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
}

/// Medians over the repetitions, ms.
#[derive(Debug, Serialize)]
pub struct BenchMarketReport {
    pub agents: usize,
    pub levels: u16,
    pub hours: usize,
    pub vector_words: usize,
    /// Baseline: summing the books in the clear, clearing 24 hours and allocating every agent.
    pub plain_ms: f64,
    /// Authenticated baseline: verifying every agent's signed bid message (ed25519, on all
    /// cores, as the private operator verifies signed masked vectors), decoding it, then
    /// the plain clearing.
    pub plain_signed_ms: f64,
    /// Key advertisement and sharing: before gate closure, independent of the bids.
    pub private_setup_ms: f64,
    /// One agent masking its day of bids.
    pub private_one_agent_masking_ms: f64,
    /// All agents masking in this process, one after the other on the available cores.
    pub private_all_masking_ms: f64,
    /// The operator: taking the masked vectors, reconstructing masks, removing them.
    pub private_unmasking_ms: f64,
    /// Decoding the aggregate and clearing 24 hours.
    pub private_clearing_ms: f64,
    /// After gate closure in a deployment (agents mask in parallel on their own machines):
    /// one agent's masking + unmasking + clearing.
    pub private_gate_to_price_ms: f64,
    pub gate_to_price_vs_plain: f64,
    pub gate_to_price_vs_plain_signed: f64,
    /// Everything after key setup in this one process (all agents' masking included).
    pub private_in_process_ms: f64,
    pub in_process_vs_plain: f64,
    pub private_equals_plain: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: BenchMarketArgs) -> Result<()> {
    let report = bench(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

pub fn bench(args: &BenchMarketArgs) -> Result<BenchMarketReport> {
    ensure!(args.repeat >= 1, "--repeat must be at least 1");
    let mut config = MarketConfig::default();
    config.ladder = PriceLadder::new(config.ladder.floor, config.ladder.ceiling, args.levels)?;
    let day = workload::random_day(args.agents, &config, 1)?;
    let signed = sign_bids(&day);
    let mut samples: [Vec<f64>; 7] = Default::default();
    let mut same = true;
    for r in 0..args.repeat {
        let started = Instant::now();
        let plain = clear_day(&day, &config.ladder, config.pricing)?;
        samples[0].push(ms(started.elapsed()));
        let started = Instant::now();
        let received = receive_signed(&signed, config.ladder.levels)?;
        clear_day(&received, &config.ladder, config.pricing)?;
        samples[6].push(ms(started.elapsed()));
        let round = PrivateRound {
            seed: r as u64,
            ..PrivateRound::default()
        };
        let private = clear_day_private(&day, &config.ladder, config.pricing, &round)?;
        let t = private.timings;
        for (i, d) in [
            t.setup,
            t.single_masking,
            t.masking,
            t.unmasking,
            t.clearing,
        ]
        .into_iter()
        .enumerate()
        {
            samples[i + 1].push(ms(d));
        }
        same &= private.equals(&plain);
    }
    let [plain, setup, one, all, unmask, clear, plain_signed] = samples.map(median);
    let gate = one + unmask + clear;
    let in_process = all + unmask + clear;
    Ok(BenchMarketReport {
        agents: args.agents,
        levels: args.levels,
        hours: HOURS,
        vector_words: HOURS * 2 * usize::from(args.levels),
        plain_ms: plain,
        plain_signed_ms: plain_signed,
        private_setup_ms: setup,
        private_one_agent_masking_ms: one,
        private_all_masking_ms: all,
        private_unmasking_ms: unmask,
        private_clearing_ms: clear,
        private_gate_to_price_ms: gate,
        gate_to_price_vs_plain: gate / plain,
        gate_to_price_vs_plain_signed: gate / plain_signed,
        private_in_process_ms: in_process,
        in_process_vs_plain: in_process / plain,
        private_equals_plain: same,
    })
}

/// Each agent's signed bid message: (key, bytes, signature).
fn sign_bids(day: &[Vec<HourBids>]) -> Vec<(VerifyingKey, Vec<u8>, Signature)> {
    day.par_iter()
        .enumerate()
        .map(|(i, bids)| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let key = SigningKey::from_bytes(&seed);
            let bytes = encode_day_bids(bids);
            let signature = key.sign(&bytes);
            (key.verifying_key(), bytes, signature)
        })
        .collect()
}

/// What a plain operator does with the messages: verify and decode each.
fn receive_signed(
    messages: &[(VerifyingKey, Vec<u8>, Signature)],
    levels: u16,
) -> Result<Vec<Vec<HourBids>>> {
    messages
        .par_iter()
        .enumerate()
        .map(|(agent, (key, bytes, signature))| {
            key.verify(bytes, signature)
                .with_context(|| format!("agent {agent}'s bid signature"))?;
            Ok(decode_day_bids(bytes, HOURS, levels, agent)?)
        })
        .collect()
}
