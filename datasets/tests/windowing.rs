//! Windowing and the chronological split: no leakage across the split, gaps never filled,
//! the feature layout as documented, kW recoverable.

use datasets::synth::{FleetConfig, generate_fleet};
use datasets::window::{OriginRange, build_samples, feature_count};
use datasets::{Normalization, RegularSeries, Resolution, SplitSpec, Target, WindowSpec};

const DAY: i64 = 86_400;

fn small_fleet(days: usize) -> (Vec<datasets::SiteMetadata>, Vec<RegularSeries>) {
    let fleet = generate_fleet(&FleetConfig {
        sites: 4,
        days,
        resolution: Resolution::Hour,
        seed: 11,
        ..FleetConfig::default()
    });
    let series = fleet.regular_series();
    (fleet.sites, series)
}

#[test]
fn split_never_leaks_and_test_origins_are_midnights() {
    let (sites, series) = small_fleet(40);
    let split = SplitSpec::day_ahead(24);
    let prepared = datasets::prepare_fleet(&sites, &series, Target::Load, split).unwrap();
    assert!(!prepared.is_empty());
    for site in &prepared {
        assert_eq!(site.split_unix_s % DAY, 0);
        assert!(!site.train.is_empty() && !site.test.is_empty());
        for &t0 in &site.train.origins {
            // The last target of a training window lies before the test period.
            assert!(
                t0 + 24 * 3600 <= site.split_unix_s,
                "train origin {t0} leaks"
            );
        }
        for &t0 in &site.test.origins {
            assert!(t0 >= site.split_unix_s);
            assert_eq!(t0 % DAY, 0, "test origin {t0} is not a UTC midnight");
        }
        // 40 days, 20% held out: 32 training days, 8 test days, one origin each.
        assert_eq!(site.test.len(), 8);
        assert_eq!(site.train.n_features, feature_count(168, 24));
    }
}

#[test]
fn windows_follow_the_layout_and_come_back_in_kw() {
    let (sites, series) = small_fleet(20);
    let (site, s) = (&sites[0], &series[0]);
    let load = s.telemetry.load_kw.as_ref().unwrap();
    let norm = Normalization::fit(Target::Load, 0.0, load.iter().flatten().copied()).unwrap();
    let spec = WindowSpec {
        context: 48,
        horizon: 24,
        stride: 1,
    };
    let all = OriginRange {
        from: i64::MIN,
        until: i64::MAX,
    };
    let set = build_samples(s, site, Target::Load, spec, norm, all).unwrap();
    assert_eq!(set.len(), 20 * 24 - 48 - 24 + 1);
    for i in [0, 7, set.len() - 1] {
        let o = s.index_of(set.origins[i]).unwrap();
        for (k, v) in set.x_row(i)[..48].iter().enumerate() {
            let kw = load[o - 48 + k].unwrap();
            assert!((norm.denormalize(*v) as f64 - kw).abs() < 1e-3 * kw.abs().max(1.0));
        }
        for (h, v) in set.y_row(i).iter().enumerate() {
            let kw = load[o + h].unwrap();
            assert!((norm.denormalize(*v) as f64 - kw).abs() < 1e-3 * kw.abs().max(1.0));
        }
    }
    assert!(set.x.iter().all(|v| v.is_finite()));
}

#[test]
fn gaps_drop_windows_instead_of_being_filled() {
    let (sites, mut series) = small_fleet(20);
    let gap = 200;
    series[0].telemetry.load_kw.as_mut().unwrap()[gap] = None;
    let s = &series[0];
    let norm = Normalization {
        offset_kw: 0.0,
        scale_kw: 1.0,
    };
    let spec = WindowSpec {
        context: 48,
        horizon: 24,
        stride: 1,
    };
    let all = OriginRange {
        from: i64::MIN,
        until: i64::MAX,
    };
    let set = build_samples(s, &sites[0], Target::Load, spec, norm, all).unwrap();
    // Every origin whose window [o-48, o+24) covers the gap is gone: 72 of them.
    assert_eq!(set.len(), 20 * 24 - 48 - 24 + 1 - 72);
    let gap_time = s.telemetry.timestamps[gap];
    for &t0 in &set.origins {
        assert!(!(t0 - 48 * 3600..t0 + 24 * 3600).contains(&gap_time));
    }
}

#[test]
fn normalization_sees_only_the_training_period() {
    let (sites, mut series) = small_fleet(30);
    let split = SplitSpec::day_ahead(24);
    let before = datasets::prepare_fleet(&sites[..1], &series[..1], Target::Load, split).unwrap();
    // Change the test period only: the fitted normalization must not move.
    let cut = before[0].split_unix_s;
    let t = &mut series[0].telemetry;
    for (ts, v) in t.timestamps.iter().zip(t.load_kw.as_mut().unwrap()) {
        if *ts >= cut {
            *v = v.map(|kw| kw * 10.0);
        }
    }
    let after = datasets::prepare_fleet(&sites[..1], &series[..1], Target::Load, split).unwrap();
    assert_eq!(
        before[0].train.normalizations,
        after[0].train.normalizations
    );
    assert_ne!(before[0].test.y, after[0].test.y);
}

#[test]
fn pv_daylight_mask_and_capacity_scaling() {
    let (sites, series) = small_fleet(20);
    let Some(i) = sites.iter().position(|s| s.kind.has_pv()) else {
        panic!("the synthetic fleet has PV sites");
    };
    let split = SplitSpec::day_ahead(24);
    let prepared =
        datasets::prepare_fleet(&sites[i..=i], &series[i..=i], Target::Pv, split).unwrap();
    let p = &prepared[0];
    assert_eq!(
        p.train.normalizations[0].scale_kw,
        sites[i].capacity_kw as f32
    );
    assert_eq!(p.train.normalizations[0].offset_kw, 0.0);
    let (daylight, night): (Vec<_>, Vec<_>) = p
        .train
        .y
        .iter()
        .zip(&p.train.daylight)
        .partition(|(_, d)| **d);
    assert!(night.iter().all(|(y, _)| **y <= 0.0), "PV is zero at night");
    assert!(daylight.iter().any(|(y, _)| **y > 0.1));
}

#[test]
fn a_site_without_the_target_is_skipped() {
    let (sites, series) = small_fleet(20);
    let pv_sites = datasets::prepare_fleet(&sites, &series, Target::Pv, SplitSpec::day_ahead(24))
        .unwrap()
        .len();
    let with_pv = series
        .iter()
        .filter(|s| s.telemetry.pv_kw.is_some())
        .count();
    assert_eq!(pv_sites, with_pv);
    assert!(with_pv < sites.len());
}
