//! Hierarchical secure aggregation: feeder rounds of SecAgg+ whose partial sums the root adds.
//! The result equals flat FedAvg over the same contributors, with dropouts at both levels, and
//! the root's view never narrows to one site.

use std::collections::BTreeSet;

use crypto::FixedPointCodec;
use crypto::secagg::hierarchy::{self, HierarchyDropout, HierarchyPlan};
use crypto::secagg::simulation::{Dropout, plain_sum, synthetic_updates};

const SITES: u32 = 64;
const LEN: usize = 40;
const CLIP: f32 = 0.5;

fn weight(site: u32) -> u32 {
    1 + (site * 37) % 90
}

struct Fleet {
    updates: Vec<Vec<f32>>,
    encoded: Vec<Vec<u32>>,
    codec: FixedPointCodec,
}

fn fleet() -> Fleet {
    let codec = FixedPointCodec::weighted(CLIP, SITES, 100).unwrap();
    let updates = synthetic_updates(SITES, LEN, CLIP, 7);
    let encoded = updates
        .iter()
        .enumerate()
        .map(|(i, u)| codec.encode_weighted(u, weight(i as u32)).unwrap())
        .collect();
    Fleet {
        updates,
        encoded,
        codec,
    }
}

/// The f64 sample-weighted mean of `sites`' f32 updates: flat FedAvg without quantization.
fn fedavg(fleet: &Fleet, sites: &[u32]) -> Vec<f64> {
    let total: f64 = sites.iter().map(|s| f64::from(weight(*s))).sum();
    (0..LEN)
        .map(|j| {
            sites
                .iter()
                .map(|s| f64::from(weight(*s)) * f64::from(fleet.updates[*s as usize][j]))
                .sum::<f64>()
                / total
        })
        .collect()
}

#[test]
fn hierarchical_round_equals_flat_fedavg_with_dropouts_at_both_levels() {
    let fleet = fleet();
    let plan = HierarchyPlan::even(SITES, 6, (LEN + 1) as u32).unwrap();
    let dropout = HierarchyDropout {
        sites: Dropout {
            before_upload: 0.1,
            after_upload: 0.1,
            ..Dropout::default()
        },
        feeders_lost: BTreeSet::from([2]),
    };
    let mut asked = Vec::new();
    let outcome = hierarchy::run(&plan, &dropout, 11, |site| {
        asked.push(site);
        fleet.encoded[site as usize].clone()
    })
    .unwrap();

    // Feeder 2's sites are out; so is every site that dropped before uploading. Sites that
    // dropped after uploading stay in (their masks were recovered).
    let lost: BTreeSet<u32> = plan.feeders[2].sites.iter().copied().collect();
    assert!(outcome.contributors.iter().all(|s| !lost.contains(s)));
    let delivered: usize = outcome
        .feeders
        .iter()
        .filter(|f| f.feeder != 2)
        .map(|f| f.contributors.len())
        .sum();
    assert_eq!(outcome.contributors.len(), delivered);
    // floor(10% of 10 or 11) = 1 site per feeder dropped before uploading.
    assert_eq!(delivered, SITES as usize - lost.len() - 5);
    // Only uploaders' updates were ever computed.
    assert!(asked.len() < SITES as usize);

    // Exactly the flat modular sum of the same contributors' encodings...
    let flat: Vec<&[u32]> = outcome
        .contributors
        .iter()
        .map(|s| fleet.encoded[*s as usize].as_slice())
        .collect();
    assert_eq!(outcome.sum, plain_sum(&flat));
    // ...so the decoded mean is flat FedAvg within the quantization bound.
    let mean = fleet
        .codec
        .decode_weighted_mean(&outcome.sum, outcome.contributors.len() as u32)
        .unwrap();
    let expected = fedavg(&fleet, &outcome.contributors);
    let bound = fleet.codec.mean_error_bound();
    for (j, (got, want)) in mean.mean.iter().zip(&expected).enumerate() {
        assert!(
            (f64::from(*got) - want).abs() <= bound,
            "coordinate {j}: {got} vs {want} (bound {bound})"
        );
    }
    let total: u64 = outcome
        .contributors
        .iter()
        .map(|s| u64::from(weight(*s)))
        .sum();
    assert_eq!(mean.total_weight, total);
}

#[test]
fn the_root_sees_only_feeder_sums_over_enough_sites() {
    let fleet = fleet();
    let plan = HierarchyPlan::even(SITES, 4, (LEN + 1) as u32).unwrap();
    let dropout = HierarchyDropout {
        sites: Dropout {
            before_advertise: 0.1,
            after_upload: 0.1,
            ..Dropout::default()
        },
        feeders_lost: BTreeSet::new(),
    };
    let outcome = hierarchy::run(&plan, &dropout, 5, |site| {
        fleet.encoded[site as usize].clone()
    })
    .unwrap();
    assert_eq!(outcome.root_view.len(), 4);
    let singles: BTreeSet<&[u32]> = fleet.encoded.iter().map(Vec::as_slice).collect();
    for part in &outcome.root_view {
        assert!(part.contributors >= plan.min_sites_per_feeder);
        assert!(part.contributors >= 2);
        assert!(
            !singles.contains(part.sum.as_slice()),
            "feeder {} forwarded a single site's update",
            part.feeder
        );
        // The feeder sum is its contributors' sum, nothing else.
        let report = &outcome.feeders[part.feeder];
        let mine: Vec<&[u32]> = report
            .contributors
            .iter()
            .map(|s| fleet.encoded[*s as usize].as_slice())
            .collect();
        assert_eq!(part.sum, plain_sum(&mine));
        assert_eq!(report.root_bytes, 4 * (LEN as u64 + 1) + 8);
        assert!(report.site_bytes > 0 && report.max_site_bytes * 2 < report.site_bytes);
    }
}

#[test]
fn a_feeder_below_its_floor_forwards_nothing_and_the_root_needs_enough_feeders() {
    let fleet = fleet();
    let mut plan = HierarchyPlan::even(SITES, 4, (LEN + 1) as u32).unwrap();
    // With 30% of each roster dropping before upload, feeder 0 (cut to 10 sites) keeps 7
    // uploaders, below the floor of 8, and must forward nothing; the others keep 12 of 16.
    plan.feeders[0].sites.truncate(10);
    plan.min_sites_per_feeder = 8;
    let dropout = HierarchyDropout {
        sites: Dropout {
            before_upload: 0.3,
            ..Dropout::default()
        },
        feeders_lost: BTreeSet::new(),
    };
    let input = |site: u32| fleet.encoded[site as usize].clone();
    let outcome = hierarchy::run(&plan, &dropout, 3, input).unwrap();
    let forwarded: Vec<usize> = outcome.root_view.iter().map(|p| p.feeder).collect();
    assert_eq!(forwarded, [1, 2, 3]);
    assert!(outcome.feeders[0].failure.is_some());
    assert_eq!(outcome.contributors.len(), 3 * 12);
    for report in &outcome.feeders {
        let forwarded = outcome.root_view.iter().any(|p| p.feeder == report.feeder);
        assert_eq!(forwarded, report.failure.is_none(), "{report:?}");
        if let Some(why) = &report.failure {
            assert!(report.contributors.is_empty());
            assert_eq!(report.root_bytes, 0);
            assert!(!why.is_empty());
        }
    }

    // Losing three of four feeders leaves the root below its minimum of two.
    plan.min_sites_per_feeder = 2;
    let lost = HierarchyDropout {
        sites: Dropout::default(),
        feeders_lost: BTreeSet::from([0, 1, 3]),
    };
    let err = hierarchy::run(&plan, &lost, 3, input)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 feeder sums arrived") && err.contains("needs 2"),
        "{err}"
    );
}

#[test]
fn bad_trees_are_refused_naming_the_problem() {
    let mut plan = HierarchyPlan::even(40, 4, 8).unwrap();
    plan.feeders[1].sites.push(0);
    let err = plan.validate().unwrap_err().to_string();
    assert!(
        err.contains("site 0") && err.contains("feeder-001"),
        "{err}"
    );
    let err = HierarchyPlan::even(10, 4, 8).unwrap_err().to_string();
    assert!(err.contains("10 sites"), "{err}");
    let mut plan = HierarchyPlan::even(40, 4, 8).unwrap();
    plan.min_feeders = 5;
    assert!(
        plan.validate()
            .unwrap_err()
            .to_string()
            .contains("min_feeders 5")
    );
}
