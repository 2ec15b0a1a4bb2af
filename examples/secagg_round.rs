//! One whole in-process secure-aggregation round, printed as JSON.
//!
//! Every participant runs the real protocol state machine (key advertisement, Shamir shares
//! encrypted end to end, masking) and the coordinator unmasks; messages go through their byte
//! encoding. `--dropout` is the fraction of participants that drop after uploading.
//!
//! ```text
//! cargo run --release --example secagg_round -- --participants 50 --length 1000000 --neighbours 3
//! ```

use std::time::Instant;

use clap::Parser;
use crypto::FixedPointCodec;
use crypto::secagg::SecAggParams;
use crypto::secagg::simulation::{
    Dropout, PreparedRound, SimulationConfig, plain_sum, synthetic_updates,
};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Run one in-process SecAgg+ round and print timings as JSON")]
struct Args {
    /// Number of participants.
    #[arg(long, default_value_t = 50)]
    participants: u32,
    /// Values per update.
    #[arg(long, default_value_t = 1_000_000)]
    length: u32,
    /// Neighbours each participant masks with (k).
    #[arg(long, default_value_t = 3)]
    neighbours: u32,
    /// Shares needed to rebuild a secret (t); default k/2 + 1.
    #[arg(long)]
    threshold: Option<u32>,
    /// Fraction of participants that drop after uploading their masked input.
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Seed of every random choice (keys, inputs, dropouts).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Untimed rounds run first, as a long-running process would have (the allocator then
    /// reuses memory instead of faulting in fresh pages); the first one's times are reported as
    /// `cold_round`.
    #[arg(long, default_value_t = 1)]
    warmup_rounds: u32,
}

/// CPU time of all of this process's threads, from Linux's per-thread scheduler statistics.
fn process_cpu_seconds() -> Option<f64> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanos as f64 / 1e9)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let threshold = args.threshold.unwrap_or(args.neighbours / 2 + 1).max(2);
    let params = SecAggParams {
        vector_len: args.length,
        neighbours: args.neighbours,
        threshold,
        min_survivors: (threshold + 1).max(args.participants / 2),
    };
    let codec = FixedPointCodec::new(1.0, args.participants)?;
    let updates = synthetic_updates(args.participants, args.length as usize, 1.0, args.seed);
    let inputs = updates
        .iter()
        .map(|u| codec.encode(u))
        .collect::<Result<Vec<_>, _>>()?;

    let config = SimulationConfig {
        participants: args.participants,
        params,
        dropout: Dropout {
            after_upload: args.dropout,
            ..Dropout::default()
        },
        seed: args.seed,
        through_bytes: true,
    };
    let mut cold_round = None;
    for warmup in 0..args.warmup_rounds {
        let config = SimulationConfig {
            seed: args.seed.wrapping_add(u64::from(warmup) + 1),
            ..config.clone()
        };
        let outcome = PreparedRound::prepare(&config)?.mask(&inputs)?.unmask();
        outcome.result.as_ref().map_err(|e| e.to_string())?;
        cold_round.get_or_insert(json!({
            "masking_all_participants_ms": outcome.masking.as_secs_f64() * 1e3,
            "coordinator_unmasking_ms": outcome.unmasking.as_secs_f64() * 1e3,
            "round_compute_ms": (outcome.masking + outcome.unmasking).as_secs_f64() * 1e3,
        }));
    }
    let prepared = PreparedRound::prepare(&config)?;
    let cpu_before = process_cpu_seconds();
    let outcome = prepared.mask(&inputs)?.unmask();
    // CPU time of masking, carrying the messages through bytes, the participants' responses and
    // unmasking: an upper bound on the round's compute that does not depend on other load.
    let round_cpu_ms = cpu_before
        .zip(process_cpu_seconds())
        .map(|(a, b)| (b - a) * 1e3);
    let result = outcome.result.as_ref().map_err(|e| e.to_string())?;

    let contributors: Vec<&[u32]> = result
        .contributors
        .iter()
        .map(|id| inputs[id.0 as usize].as_slice())
        .collect();
    let start = Instant::now();
    let expected = plain_sum(&contributors);
    let plain_sum_ms = start.elapsed().as_secs_f64() * 1e3;

    let n = result.contributors.len() as u32;
    let decoded = codec.decode_sum(&result.sum, n)?;
    let max_abs_error = decoded
        .iter()
        .enumerate()
        .map(|(i, got)| {
            let exact: f64 = result
                .contributors
                .iter()
                .map(|id| f64::from(updates[id.0 as usize][i]))
                .sum();
            (f64::from(*got) - exact).abs()
        })
        .fold(0.0, f64::max);
    let bytes: Vec<usize> = outcome
        .uploaded
        .iter()
        .filter_map(|id| outcome.bytes_sent.get(id).copied())
        .collect();
    let masking_ms = outcome.masking.as_secs_f64() * 1e3;
    let unmasking_ms = outcome.unmasking.as_secs_f64() * 1e3;
    let report = json!({
        "participants": args.participants,
        "length": args.length,
        "neighbours": args.neighbours,
        "threshold": threshold,
        "dropout_after_upload": args.dropout,
        "seed": args.seed,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "contributors": n,
        "masking_all_participants_ms": masking_ms,
        "masking_one_participant_ms": outcome.single_masking.as_secs_f64() * 1e3,
        "coordinator_unmasking_ms": unmasking_ms,
        "round_compute_ms": masking_ms + unmasking_ms,
        "round_cpu_ms_all_threads": round_cpu_ms,
        "cold_round": cold_round,
        "plain_sum_ms": plain_sum_ms,
        "mask_streams_removed": result.mask_streams,
        "bytes_sent_per_participant": bytes.iter().sum::<usize>() as f64 / bytes.len().max(1) as f64,
        "matched_plaintext_sum": result.sum == expected,
        "max_abs_error": max_abs_error,
        "error_bound": codec.sum_error_bound(n),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
