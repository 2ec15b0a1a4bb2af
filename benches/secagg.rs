//! Secure aggregation costs, with the baselines measured in the same run.
//!
//! For N participants and vectors of d words: one participant's masking (real state machine:
//! PRG streams, encoding, signing), the coordinator's unmasking (taking N masked inputs,
//! verifying and adding them, rebuilding secrets, removing the masks), the plain sum of the same
//! N vectors, and the PRG streams the coordinator has to generate. 5% of the participants drop
//! before uploading, so unmasking also rebuilds pairwise masks. Last, the whole in-process round
//! of the Flower comparison: N=50, d=1,000,000, 3 neighbours, no dropout.
//!
//! `cargo bench --bench secagg` (about two minutes on 2 cores). A summary with the ratios is
//! printed to stderr at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use crypto::FixedPointCodec;
use crypto::secagg::participant::ReadyToMask;
use crypto::secagg::prg::{MaskSign, MaskStream, apply_masks};
use crypto::secagg::simulation::{
    Dropout, PreparedRound, SimulationConfig, plain_sum, synthetic_updates,
};
use crypto::secagg::{MaskSeed, SecAggParams};

const SIZES: [(u32, u32); 5] = [
    (10, 100_000),
    (10, 1_000_000),
    (100, 100_000),
    (100, 1_000_000),
    (1000, 10_000),
];

fn config(n: u32, params: SecAggParams, dropout: Dropout, seed: u64) -> SimulationConfig {
    SimulationConfig {
        participants: n,
        params,
        dropout,
        seed,
        through_bytes: false,
    }
}

fn inputs(n: u32, d: u32) -> Vec<Vec<u32>> {
    let codec = FixedPointCodec::new(1.0, n).expect("codec");
    synthetic_updates(n, d as usize, 1.0, 7)
        .iter()
        .map(|u| codec.encode(u).expect("in range"))
        .collect()
}

fn streams(count: usize) -> Vec<MaskStream> {
    (0..count)
        .map(|i| MaskStream {
            key: MaskSeed::from_bytes([i as u8; 32]),
            sign: MaskSign::Subtract,
        })
        .collect()
}

/// The median, or `None` when a filter on the command line skipped the benchmark.
fn median(mut times: Vec<Duration>) -> Option<Duration> {
    times.sort_unstable();
    times.get(times.len() / 2).copied()
}

struct Summary {
    lines: Vec<String>,
}

fn bench_sizes(c: &mut Criterion, summary: &mut Summary) {
    let mut group = c.benchmark_group("secagg");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    group.sampling_mode(SamplingMode::Flat);
    for (n, d) in SIZES {
        let params = SecAggParams::suggested(n as usize, d).expect("params");
        let dropout = Dropout {
            before_upload: 0.05,
            ..Dropout::default()
        };
        let inputs = inputs(n, d);
        let id = format!("N={n}/d={d}/k={}", params.neighbours);

        // One participant's masking, through the real state machine.
        let mut pool: Vec<ReadyToMask> = Vec::new();
        let mut seed = 100;
        let mut mask_times = Vec::new();
        group.bench_function(BenchmarkId::new("participant_masking", &id), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if pool.is_empty() {
                        seed += 1;
                        let prepared = PreparedRound::prepare(&config(n, params, dropout, seed))
                            .expect("round");
                        pool = prepared.into_ready().into_iter().map(|(_, s)| s).collect();
                    }
                    let state = pool.pop().expect("a participant");
                    let start = Instant::now();
                    black_box(state.mask(&inputs[0]).map_err(|r| r.error).expect("mask"));
                    let elapsed = start.elapsed();
                    mask_times.push(elapsed);
                    total += elapsed;
                }
                total
            });
        });

        // The coordinator's unmasking of a whole round's masked inputs.
        let mut unmask_times = Vec::new();
        let mut mask_streams = 0;
        group.bench_function(BenchmarkId::new("coordinator_unmasking", &id), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    seed += 1;
                    let round =
                        PreparedRound::prepare(&config(n, params, dropout, seed)).expect("round");
                    let outcome = round.mask(&inputs).expect("masking").unmask();
                    mask_streams = outcome.result.as_ref().expect("unmasked").mask_streams;
                    unmask_times.push(outcome.unmasking);
                    total += outcome.unmasking;
                }
                total
            });
        });

        let vectors: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let mut sum_times = Vec::new();
        group.bench_function(BenchmarkId::new("plain_sum", &id), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(plain_sum(black_box(&vectors)));
                }
                let elapsed = start.elapsed();
                sum_times.push(elapsed / iters as u32);
                elapsed
            });
        });

        let coordinator_streams = streams(mask_streams);
        let mut prg_times = Vec::new();
        group.bench_function(
            BenchmarkId::new(format!("prg_streams_{mask_streams}"), &id),
            |b| {
                let mut words = vec![0u32; d as usize];
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        apply_masks(black_box(&mut words), &coordinator_streams);
                    }
                    let elapsed = start.elapsed();
                    prg_times.push(elapsed / iters as u32);
                    elapsed
                });
            },
        );

        let (Some(mask), Some(unmask), Some(sum), Some(prg)) = (
            median(mask_times),
            median(unmask_times),
            median(sum_times),
            median(prg_times),
        ) else {
            continue;
        };
        summary.lines.push(format!(
            "{id}: participant masking {:.2} ms, coordinator unmasking {:.1} ms, plain sum {:.1} ms, \
             {mask_streams} PRG streams {:.1} ms, unmasking / (PRG + sum) = {:.2}",
            ms(mask),
            ms(unmask),
            ms(sum),
            ms(prg),
            unmask.as_secs_f64() / (prg + sum).as_secs_f64()
        ));
    }
    group.finish();
}

fn bench_flower_round(c: &mut Criterion, summary: &mut Summary) {
    let (n, d) = (50, 1_000_000);
    let params = SecAggParams {
        vector_len: d,
        neighbours: 3,
        threshold: 2,
        min_survivors: 25,
    };
    let inputs = inputs(n, d);
    let mut group = c.benchmark_group("secagg_round");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    group.sampling_mode(SamplingMode::Flat);
    let mut seed = 1000;
    let mut times = Vec::new();
    group.bench_function("N=50/d=1000000/k=3", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seed += 1;
                let round = PreparedRound::prepare(&config(n, params, Dropout::default(), seed))
                    .expect("round");
                let outcome = round.mask(&inputs).expect("masking").unmask();
                assert!(outcome.result.is_ok());
                let elapsed = outcome.masking + outcome.unmasking;
                times.push(elapsed);
                total += elapsed;
            }
            total
        });
    });
    group.finish();
    if let Some(round) = median(times) {
        summary.lines.push(format!(
            "N=50/d=1000000/k=3 whole round (all masking + unmasking): {:.0} ms, {:.1}x faster than \
             Flower 1.42 SecAgg+ (3.6 s)",
            ms(round),
            3.6 / round.as_secs_f64()
        ));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn benches(c: &mut Criterion) {
    let mut summary = Summary { lines: Vec::new() };
    bench_sizes(c, &mut summary);
    bench_flower_round(c, &mut summary);
    eprintln!("\nsecagg summary (medians):");
    for line in summary.lines {
        eprintln!("  {line}");
    }
}

criterion_group!(secagg, benches);
criterion_main!(secagg);
