//! `gridfed bench fleet`: one hierarchical secure-aggregation round over a simulated fleet
//! (sites that skip training and send synthetic clipped updates), feeder aggregators running
//! SecAgg+ and a root adding their partial sums, all in this process, feeder after feeder.
//! Baselines in the same run: the same sums in the clear, and (up to `--flat-limit` sites) one
//! flat SecAgg+ round over the whole fleet.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use clap::Args;
use crypto::FixedPointCodec;
use crypto::secagg::SecAggParams;
use crypto::secagg::hierarchy::{self, HierarchyDropout, HierarchyPlan};
use crypto::secagg::simulation::{Dropout, SimulationConfig, plain_sum};
use serde::Serialize;

#[derive(Args, Debug, Clone)]
pub struct BenchFleetArgs {
    /// Simulated sites.
    #[arg(long, default_value_t = 1000)]
    pub sites: u32,
    /// Parameters per update (f32 values; one more word carries the sample weight).
    #[arg(long, default_value_t = 100_000)]
    pub length: u32,
    /// Feeder aggregators (sites are split evenly among them).
    #[arg(long, default_value_t = 20)]
    pub aggregators: u32,
    /// Share of each feeder's sites dropping before they upload.
    #[arg(long, default_value_t = 0.05)]
    pub drop: f64,
    /// Run the flat SecAgg+ baseline only up to this many sites (it holds every site's update
    /// at once).
    #[arg(long, default_value_t = 2000)]
    pub flat_limit: u32,
    /// Seed of the synthetic updates.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct LevelBytes {
    /// Sites to their feeder aggregator, all sites together.
    pub site_to_aggregator_total_mb: f64,
    /// The most one site sent over the round.
    pub per_site_max_kb: f64,
    /// Aggregators to the root, all together.
    pub aggregator_to_root_total_mb: f64,
    pub per_aggregator_kb: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchFleetReport {
    pub sites: u32,
    pub length: u32,
    pub aggregators: u32,
    pub sites_per_aggregator: u32,
    pub contributors: usize,
    pub feeders_failed: usize,
    /// Key agreement and share distribution of every feeder (before any update exists).
    pub setup_s: f64,
    /// Every site masking, feeder after feeder (in a deployment sites mask in parallel on their
    /// own machines: see `one_feeder_round_s`).
    pub masking_s: f64,
    /// Every aggregator unmasking, one after the other in this process.
    pub unmasking_s: f64,
    pub root_s: f64,
    /// The slowest feeder's masking + unmasking: the round's latency after setup when the
    /// feeders run side by side.
    pub one_feeder_round_s: f64,
    /// Baseline: adding every update in the clear, by feeder, then at the root.
    pub plain_sum_s: f64,
    pub masking_and_unmasking_vs_plain: f64,
    /// Baseline: one flat SecAgg+ round over the whole fleet (absent above `--flat-limit`).
    pub flat_round_s: Option<f64>,
    pub flat_unmasking_s: Option<f64>,
    /// Slowest aggregator's unmasking against the flat coordinator's.
    pub aggregator_vs_flat_unmasking: Option<f64>,
    pub bytes: LevelBytes,
    /// Peak resident memory of this process while one feeder's round ran (its sites' updates,
    /// masked vectors and the aggregator's state), the largest over the feeders.
    pub peak_rss_per_aggregator_mb: Option<f64>,
    /// Resident memory before the first feeder.
    pub base_rss_mb: Option<f64>,
    /// The root's sum equals the plain sum of the same contributors' encodings, word for word.
    pub equals_flat_sum: bool,
    /// Largest error of the decoded FedAvg against f64 FedAvg, and the codec's bound.
    pub max_mean_error: f64,
    pub mean_error_bound: f64,
}

const CLIP: f32 = 1.0;
const MAX_WEIGHT: u32 = 100;

/// A site's synthetic update, uniform in [-CLIP, CLIP], and its sample weight: cheap and
/// deterministic, so the check can regenerate it instead of holding the fleet in memory.
fn site_update(seed: u64, site: u32, length: u32) -> (Vec<f32>, u32) {
    let mut state = seed ^ (u64::from(site) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let values = (0..length)
        .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * CLIP)
        .collect();
    (values, 1 + (next() % u64::from(MAX_WEIGHT)) as u32)
}

fn rss_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn max_mb(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Resets the kernel's peak-RSS mark (Linux), so each feeder's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn run(args: BenchFleetArgs) -> Result<()> {
    let report = bench(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

pub fn bench(args: &BenchFleetArgs) -> Result<BenchFleetReport> {
    ensure!(args.length >= 1, "--length must be at least 1");
    ensure!(
        (0.0..0.5).contains(&args.drop),
        "--drop must be in [0, 0.5)"
    );
    let codec = FixedPointCodec::weighted(CLIP, args.sites, MAX_WEIGHT)?;
    let encode = |site: u32| -> Vec<u32> {
        let (values, weight) = site_update(args.seed, site, args.length);
        // In range by construction; an error here is a bug in the generator.
        codec
            .encode_weighted(&values, weight)
            .unwrap_or_else(|e| panic!("site {site}: {e}"))
    };
    let vector_len = args.length + 1;
    let plan = HierarchyPlan::even(args.sites, args.aggregators, vector_len)?;
    let dropout = HierarchyDropout {
        sites: Dropout {
            before_upload: args.drop,
            ..Dropout::default()
        },
        feeders_lost: Default::default(),
    };

    // Baseline: the same additions in the clear, feeder by feeder then at the root
    // (generating the updates is not timed).
    eprintln!("plain sums of {} sites ...", args.sites);
    let mut summing = Duration::ZERO;
    let mut partials = Vec::with_capacity(plan.feeders.len());
    for feeder in &plan.feeders {
        let updates: Vec<Vec<u32>> = feeder.sites.iter().map(|s| encode(*s)).collect();
        let refs: Vec<&[u32]> = updates.iter().map(Vec::as_slice).collect();
        let started = Instant::now();
        partials.push(plain_sum(&refs));
        summing += started.elapsed();
    }
    let refs: Vec<&[u32]> = partials.iter().map(Vec::as_slice).collect();
    let started = Instant::now();
    std::hint::black_box(plain_sum(&refs));
    summing += started.elapsed();
    drop(partials);
    let plain_sum_s = summing.as_secs_f64().max(1e-6);

    eprintln!(
        "hierarchical round: {} feeders of ~{} sites, {} words per update ...",
        args.aggregators,
        args.sites / args.aggregators,
        vector_len
    );
    let base_rss_mb = rss_mb("VmRSS:");
    let mut peak: Option<f64> = None;
    let mut current_feeder = usize::MAX;
    let feeder_of = |site: u32| plan.feeders.iter().position(|f| f.sites.contains(&site));
    let outcome = hierarchy::run(&plan, &dropout, args.seed, |site| {
        let f = feeder_of(site).unwrap_or(0);
        if f != current_feeder {
            if current_feeder != usize::MAX {
                peak = max_mb(peak, rss_mb("VmHWM:"));
            }
            reset_peak_rss();
            current_feeder = f;
            eprintln!("  feeder {}/{} ...", f + 1, plan.feeders.len());
        }
        encode(site)
    })?;
    let peak_rss_per_aggregator_mb = max_mb(peak, rss_mb("VmHWM:"));

    // Check: the root's sum against the plain sum of the same contributors, and the decoded
    // mean against f64 FedAvg.
    eprintln!("checking against the flat sum ...");
    let mut flat = vec![0u32; vector_len as usize];
    let mut exact = vec![0f64; args.length as usize];
    let mut total_weight = 0f64;
    for site in &outcome.contributors {
        let (values, weight) = site_update(args.seed, *site, args.length);
        for (acc, word) in flat.iter_mut().zip(encode(*site)) {
            *acc = acc.wrapping_add(word);
        }
        for (acc, v) in exact.iter_mut().zip(&values) {
            *acc += f64::from(weight) * f64::from(*v);
        }
        total_weight += f64::from(weight);
    }
    let mean = codec.decode_weighted_mean(&outcome.sum, outcome.contributors.len() as u32)?;
    let max_mean_error = mean
        .mean
        .iter()
        .zip(&exact)
        .map(|(m, e)| (f64::from(*m) - e / total_weight).abs())
        .fold(0.0, f64::max);

    let (flat_round_s, flat_unmasking_s) = if args.sites <= args.flat_limit {
        eprintln!("flat SecAgg+ baseline over {} sites ...", args.sites);
        let inputs: Vec<Vec<u32>> = (0..args.sites).map(encode).collect();
        let config = SimulationConfig {
            participants: args.sites,
            params: SecAggParams::suggested(args.sites as usize, vector_len)?,
            dropout: dropout.sites,
            seed: args.seed,
            through_bytes: true,
        };
        let started = Instant::now();
        let prepared = crypto::secagg::simulation::PreparedRound::prepare(&config)?;
        let setup = started.elapsed();
        let round = prepared.mask(&inputs)?.unmask();
        round.result?;
        (
            Some((started.elapsed() - setup).as_secs_f64()),
            Some(round.unmasking.as_secs_f64()),
        )
    } else {
        (None, None)
    };

    let sum_s = |f: fn(&hierarchy::FeederReport) -> Duration| {
        outcome
            .feeders
            .iter()
            .map(f)
            .sum::<Duration>()
            .as_secs_f64()
    };
    let masking_s = sum_s(|f| f.masking);
    let unmasking_s = sum_s(|f| f.unmasking);
    let slowest_unmasking = outcome
        .feeders
        .iter()
        .map(|f| f.unmasking.as_secs_f64())
        .fold(0.0, f64::max);
    let one_feeder_round_s = outcome
        .feeders
        .iter()
        .map(|f| (f.masking + f.unmasking).as_secs_f64())
        .fold(0.0, f64::max);
    let site_bytes: u64 = outcome.feeders.iter().map(|f| f.site_bytes).sum();
    let root_bytes: u64 = outcome.feeders.iter().map(|f| f.root_bytes).sum();
    let forwarded = outcome.root_view.len().max(1) as f64;
    Ok(BenchFleetReport {
        sites: args.sites,
        length: args.length,
        aggregators: args.aggregators,
        sites_per_aggregator: args.sites / args.aggregators,
        contributors: outcome.contributors.len(),
        feeders_failed: outcome
            .feeders
            .iter()
            .filter(|f| f.failure.is_some())
            .count(),
        setup_s: sum_s(|f| f.setup),
        masking_s,
        unmasking_s,
        root_s: outcome.root.as_secs_f64(),
        one_feeder_round_s,
        plain_sum_s,
        masking_and_unmasking_vs_plain: (masking_s + unmasking_s) / plain_sum_s,
        flat_round_s,
        flat_unmasking_s,
        aggregator_vs_flat_unmasking: flat_unmasking_s.map(|f| slowest_unmasking / f),
        bytes: LevelBytes {
            site_to_aggregator_total_mb: site_bytes as f64 / 1e6,
            per_site_max_kb: outcome
                .feeders
                .iter()
                .map(|f| f.max_site_bytes)
                .max()
                .unwrap_or(0) as f64
                / 1e3,
            aggregator_to_root_total_mb: root_bytes as f64 / 1e6,
            per_aggregator_kb: root_bytes as f64 / forwarded / 1e3,
        },
        peak_rss_per_aggregator_mb,
        base_rss_mb,
        equals_flat_sum: flat == outcome.sum,
        max_mean_error,
        mean_error_bound: codec.mean_error_bound(),
    })
}
