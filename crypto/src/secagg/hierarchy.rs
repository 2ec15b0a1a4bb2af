//! Hierarchical secure aggregation, grid-aligned: each feeder's aggregator runs a SecAgg+ round
//! over its own sites and forwards only the unmasked *partial sum* of that feeder to the root,
//! which adds the partial sums. The root never takes part in a site's masking protocol, so what
//! it sees is one sum per feeder, each over at least `min_sites_per_feeder` sites.
//!
//! Threat model: semi-honest root and aggregators. An aggregator learns its feeder's sum (as a
//! flat SecAgg+ coordinator learns the fleet's); the root learns the feeder sums and their
//! contributor counts. A feeder whose round ends with fewer than `min_sites_per_feeder`
//! contributors forwards nothing (its sum would be too close to one site's update), so the
//! root's view never narrows to one site. Feeder sums are visible to the root by design: a
//! deployment that must hide them too runs a second SecAgg+ level among the aggregators.
//!
//! Dropouts are handled per level: sites drop inside their feeder's round (SecAgg+ recovers
//! their masks), and a feeder that fails its round or never forwards is left out by the root,
//! which proceeds while at least `min_feeders` partial sums arrive. Because modular sums are
//! associative, the root's sum equals the flat sum of the same contributors' encodings exactly;
//! decoded, it equals flat FedAvg within the codec's quantization bound.
//!
//! This module drives the real participant and coordinator state machines in memory
//! ([`super::simulation`]), one feeder at a time (each feeder's round is parallel inside), so a
//! fleet of 10,000 sites fits in the memory of one feeder's round.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::params::SecAggParams;
use super::simulation::{Dropout, PreparedRound, SimulationConfig, plain_sum};
use crate::CryptoError;

/// One feeder and the sites (global indices) behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeederPlan {
    pub name: String,
    pub sites: Vec<u32>,
}

/// The aggregation tree and its per-level rules.
#[derive(Debug, Clone)]
pub struct HierarchyPlan {
    pub feeders: Vec<FeederPlan>,
    /// A feeder forwards its sum only over at least this many contributors (at least 2).
    pub min_sites_per_feeder: u32,
    /// The root aborts with fewer partial sums than this.
    pub min_feeders: u32,
    /// Words per site's encoded update.
    pub vector_len: u32,
}

impl HierarchyPlan {
    /// `sites` split into `aggregators` feeders of consecutive indices (sizes differ by at most
    /// one), forwarding over at least half their sites and needing half the feeders.
    pub fn even(sites: u32, aggregators: u32, vector_len: u32) -> Result<Self, CryptoError> {
        if aggregators == 0 || sites < 4 * aggregators {
            return Err(CryptoError::InvalidParams(format!(
                "{sites} sites cannot fill {aggregators} feeders of at least 4 sites"
            )));
        }
        let base = sites / aggregators;
        let extra = sites % aggregators;
        let mut next = 0;
        let feeders = (0..aggregators)
            .map(|f| {
                let size = base + u32::from(f < extra);
                let plan = FeederPlan {
                    name: format!("feeder-{f:03}"),
                    sites: (next..next + size).collect(),
                };
                next += size;
                plan
            })
            .collect();
        Ok(Self {
            feeders,
            min_sites_per_feeder: (base / 2).max(2),
            min_feeders: aggregators.div_ceil(2),
            vector_len,
        })
    }

    pub fn validate(&self) -> Result<(), CryptoError> {
        let fail = |why: String| Err(CryptoError::InvalidParams(why));
        if self.min_sites_per_feeder < 2 {
            return fail("hierarchy: min_sites_per_feeder must be at least 2".into());
        }
        if self.min_feeders == 0 || self.min_feeders as usize > self.feeders.len() {
            return fail(format!(
                "hierarchy: min_feeders {} is outside 1..={}",
                self.min_feeders,
                self.feeders.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for feeder in &self.feeders {
            if feeder.sites.len() < 4 {
                return fail(format!(
                    "hierarchy: feeder `{}` has {} sites, needs at least 4",
                    feeder.name,
                    feeder.sites.len()
                ));
            }
            if let Some(site) = feeder.sites.iter().find(|s| !seen.insert(**s)) {
                return fail(format!(
                    "hierarchy: site {site} is under two feeders (second: `{}`)",
                    feeder.name
                ));
            }
        }
        Ok(())
    }
}

/// Who drops, at each level.
#[derive(Debug, Clone, Default)]
pub struct HierarchyDropout {
    /// Sites dropping inside every feeder's round, per phase.
    pub sites: Dropout,
    /// Feeders (by index) that finish their round but never deliver the sum to the root.
    pub feeders_lost: BTreeSet<usize>,
}

/// What the root receives from one feeder: all of its view of that feeder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeederSum {
    pub feeder: usize,
    /// Modular sum of the contributors' encodings.
    pub sum: Vec<u32>,
    pub contributors: u32,
}

/// How one feeder's round went.
#[derive(Debug, Clone)]
pub struct FeederReport {
    pub feeder: usize,
    pub sites: u32,
    /// Global indices of the sites whose update is in the feeder's sum.
    pub contributors: Vec<u32>,
    /// Why the feeder forwarded nothing, if it did not.
    pub failure: Option<String>,
    /// Key agreement and share distribution (the round before any update exists).
    pub setup: Duration,
    /// Every site of the feeder masking (in parallel).
    pub masking: Duration,
    /// The aggregator taking the masked inputs and unmasking.
    pub unmasking: Duration,
    /// Bytes all sites of the feeder sent to their aggregator.
    pub site_bytes: u64,
    /// Bytes the feeder sent to the root (its partial sum and count), 0 if none.
    pub root_bytes: u64,
    /// Largest single site's bytes.
    pub max_site_bytes: u64,
}

/// A whole hierarchical round.
#[derive(Debug)]
pub struct HierarchicalOutcome {
    /// The root's sum over every delivered feeder sum.
    pub sum: Vec<u32>,
    /// Global indices of all sites in `sum`, increasing.
    pub contributors: Vec<u32>,
    /// Exactly what the root received.
    pub root_view: Vec<FeederSum>,
    pub feeders: Vec<FeederReport>,
    /// The root adding the partial sums.
    pub root: Duration,
}

/// The bytes a feeder sum takes on the wire (words, count, feeder index).
fn feeder_sum_bytes(len: usize) -> u64 {
    4 * len as u64 + 8
}

/// Runs one hierarchical round. `input(site)` yields the encoded update of a global site index
/// (called once per site, feeder by feeder, so no more than one feeder's updates are in memory).
pub fn run(
    plan: &HierarchyPlan,
    dropout: &HierarchyDropout,
    seed: u64,
    mut input: impl FnMut(u32) -> Vec<u32>,
) -> Result<HierarchicalOutcome, CryptoError> {
    plan.validate()?;
    let mut root_view = Vec::new();
    let mut feeders = Vec::with_capacity(plan.feeders.len());
    for (index, feeder) in plan.feeders.iter().enumerate() {
        let (report, sum) = run_feeder(plan, index, feeder, &dropout.sites, seed, &mut input)?;
        if let Some(sum) = sum
            && !dropout.feeders_lost.contains(&index)
        {
            root_view.push(sum);
        }
        feeders.push(report);
    }
    let start = Instant::now();
    if root_view.len() < plan.min_feeders as usize {
        return Err(CryptoError::InvalidParams(format!(
            "root: {} feeder sums arrived, the round needs {}",
            root_view.len(),
            plan.min_feeders
        )));
    }
    let parts: Vec<&[u32]> = root_view.iter().map(|f| f.sum.as_slice()).collect();
    let sum = plain_sum(&parts);
    let root = start.elapsed();
    let delivered: BTreeSet<usize> = root_view.iter().map(|f| f.feeder).collect();
    let mut contributors: Vec<u32> = feeders
        .iter()
        .filter(|r| delivered.contains(&r.feeder))
        .flat_map(|r| r.contributors.iter().copied())
        .collect();
    contributors.sort_unstable();
    Ok(HierarchicalOutcome {
        sum,
        contributors,
        root_view,
        feeders,
        root,
    })
}

fn run_feeder(
    plan: &HierarchyPlan,
    index: usize,
    feeder: &FeederPlan,
    site_dropout: &Dropout,
    seed: u64,
    input: &mut impl FnMut(u32) -> Vec<u32>,
) -> Result<(FeederReport, Option<FeederSum>), CryptoError> {
    let roster = feeder.sites.len();
    let mut report = FeederReport {
        feeder: index,
        sites: roster as u32,
        contributors: Vec::new(),
        failure: None,
        setup: Duration::ZERO,
        masking: Duration::ZERO,
        unmasking: Duration::ZERO,
        site_bytes: 0,
        root_bytes: 0,
        max_site_bytes: 0,
    };
    let mut params = SecAggParams::suggested(roster, plan.vector_len)?;
    // The feeder's own floor: never unmask a sum over fewer sites than the root may see.
    params.min_survivors = params.min_survivors.max(plan.min_sites_per_feeder);
    let config = SimulationConfig {
        participants: roster as u32,
        params,
        dropout: *site_dropout,
        seed: seed ^ ((index as u64 + 1) << 40),
        through_bytes: true,
    };
    let start = Instant::now();
    let prepared = match PreparedRound::prepare(&config) {
        Ok(p) => p,
        Err(e) => {
            report.failure = Some(e.to_string());
            return Ok((report, None));
        }
    };
    report.setup = start.elapsed();
    // Local inputs by local id; sites that dropped before uploading never produce one.
    let uploaders: BTreeSet<u32> = prepared.uploaders().iter().map(|id| id.0).collect();
    let inputs: Vec<Vec<u32>> = feeder
        .sites
        .iter()
        .enumerate()
        .map(|(local, &site)| {
            if uploaders.contains(&(local as u32)) {
                input(site)
            } else {
                Vec::new()
            }
        })
        .collect();
    let masked = prepared.mask(&inputs)?;
    drop(inputs);
    let outcome = masked.unmask();
    report.masking = outcome.masking;
    report.unmasking = outcome.unmasking;
    report.site_bytes = outcome.bytes_sent.values().map(|b| *b as u64).sum();
    report.max_site_bytes = outcome
        .bytes_sent
        .values()
        .map(|b| *b as u64)
        .max()
        .unwrap_or(0);
    let aggregate = match outcome.result {
        Ok(a) => a,
        Err(e) => {
            report.failure = Some(e.to_string());
            return Ok((report, None));
        }
    };
    let count = aggregate.contributors.len() as u32;
    if count < plan.min_sites_per_feeder {
        report.failure = Some(format!(
            "{count} contributors, below the feeder floor of {}",
            plan.min_sites_per_feeder
        ));
        return Ok((report, None));
    }
    report.contributors = aggregate
        .contributors
        .iter()
        .map(|id| feeder.sites[id.0 as usize])
        .collect();
    report.root_bytes = feeder_sum_bytes(aggregate.sum.len());
    Ok((
        report,
        Some(FeederSum {
            feeder: index,
            sum: aggregate.sum,
            contributors: count,
        }),
    ))
}
