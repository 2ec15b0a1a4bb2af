//! Fleets as real operators export them: daylight-only inverters, too-short sites, the
//! realistic synthetic profile. Run in release (a year of an hourly fleet per test binary).

use std::sync::OnceLock;

use datasets::quality::site_quality_report;
use datasets::solar::is_daylight;
use datasets::synth::{Fleet, FleetConfig, Profile, generate_fleet};
use datasets::{
    Resolution, Sector, SiteKind, SiteTelemetry, SplitSpec, Target, grid_site, prepare_fleet,
};

fn realistic_year() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        generate_fleet(&FleetConfig {
            profile: Profile::Realistic,
            ..FleetConfig::default()
        })
    })
}

fn clean_year() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| generate_fleet(&FleetConfig::default()))
}

/// Keeps only the rows of `t` that satisfy `keep(timestamp, row)`.
fn keep_rows(t: &SiteTelemetry, keep: impl Fn(i64, usize) -> bool) -> SiteTelemetry {
    let rows: Vec<usize> = (0..t.len()).filter(|&i| keep(t.timestamps[i], i)).collect();
    let pick =
        |c: &Option<Vec<Option<f64>>>| c.as_ref().map(|v| rows.iter().map(|&i| v[i]).collect());
    SiteTelemetry {
        site_id: t.site_id.clone(),
        timestamps: rows.iter().map(|&i| t.timestamps[i]).collect(),
        load_kw: pick(&t.load_kw),
        pv_kw: pick(&t.pv_kw),
        net_load_kw: pick(&t.net_load_kw),
        temperature_c: pick(&t.temperature_c),
        ghi_w_m2: pick(&t.ghi_w_m2),
        cloud_cover: pick(&t.cloud_cover),
        temperature_forecast_c: pick(&t.temperature_forecast_c),
        ghi_forecast_w_m2: pick(&t.ghi_forecast_w_m2),
        cloud_cover_forecast: pick(&t.cloud_cover_forecast),
    }
}

#[test]
fn night_gaps_of_pv_are_zeros_and_daytime_gaps_stay_missing() {
    let fleet = clean_year();
    let i = fleet
        .sites
        .iter()
        .position(|s| s.kind == SiteKind::PvPlant)
        .expect("the fleet has a PV plant");
    let (meta, full) = (&fleet.sites[i], &fleet.telemetry[i]);
    let step = Resolution::Hour.seconds();
    let night = |ts: i64| !is_daylight(meta.latitude, meta.longitude, ts, step);
    // A logger that sleeps at night, and one daytime outage at noon of day 100.
    let outage = full.timestamps[0] + 100 * 86_400 + 12 * 3600;
    let mut logged = keep_rows(full, |ts, _| !night(ts) && ts != outage);
    // An inverter export carries no weather (whose night hours would be missing too).
    logged.temperature_c = None;
    logged.ghi_w_m2 = None;
    logged.cloud_cover = None;
    logged.temperature_forecast_c = None;
    logged.ghi_forecast_w_m2 = None;
    logged.cloud_cover_forecast = None;
    let gridded = grid_site(&logged, Resolution::Hour, Resolution::Hour, meta).unwrap();
    let nights = full.timestamps.iter().filter(|&&ts| night(ts)).count();
    // The last row is a daylight one, so every night step up to it is filled.
    let last = *logged.timestamps.last().unwrap();
    let trailing = full
        .timestamps
        .iter()
        .filter(|&&ts| ts > last && night(ts))
        .count();
    let leading_first = logged.timestamps[0];
    let leading = full
        .timestamps
        .iter()
        .filter(|&&ts| ts < leading_first && night(ts))
        .count();
    assert_eq!(gridded.pv_night_zeros, nights - trailing - leading);
    let t = &gridded.series.telemetry;
    let pv = t.pv_kw.as_ref().unwrap();
    for (ts, v) in t.timestamps.iter().zip(pv) {
        if *ts == outage {
            assert_eq!(*v, None, "a daytime gap must stay missing");
        } else if night(*ts) {
            assert_eq!(*v, Some(0.0), "night step {ts} must be a known zero");
        } else {
            assert!(v.is_some(), "daylight step {ts} was logged");
        }
    }
    // Now every day-ahead window but those touching the outage is complete.
    let prepared = prepare_fleet(
        std::slice::from_ref(meta),
        std::slice::from_ref(&gridded.series),
        Target::Pv,
        SplitSpec::day_ahead(24),
    )
    .unwrap();
    assert!(prepared.skipped.is_empty(), "{:?}", prepared.skipped);
    assert!(prepared[0].train.len() > 5000);
    // Without the night filling the same site would have no window at all.
    let raw =
        datasets::RegularSeries::resample(&logged, Resolution::Hour, Resolution::Hour).unwrap();
    let unfilled = prepare_fleet(
        std::slice::from_ref(meta),
        std::slice::from_ref(&raw),
        Target::Pv,
        SplitSpec::day_ahead(24),
    )
    .unwrap();
    assert!(unfilled.is_empty());
    assert_eq!(unfilled.skipped.len(), 1);
    assert!(
        unfilled.skipped[0].reason.contains("no complete window"),
        "{}",
        unfilled.skipped[0].reason
    );
    // The quality report says so up front.
    let report = site_quality_report(&logged, Resolution::Hour, meta);
    assert_eq!(report.pv_night_zero_steps, gridded.pv_night_zeros);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(report.to_string().contains("filled with 0 kW"));
}

#[test]
fn a_site_too_short_to_train_is_skipped_with_its_reason_and_the_others_go_on() {
    let fleet = clean_year();
    let mut series = fleet.regular_series();
    // Site 1 joined six days before the end: not even one week of context.
    let t = &series[1].telemetry;
    let cut = t.len() - 6 * 24;
    series[1].telemetry = keep_rows(t, |_, i| i >= cut);
    let split = SplitSpec::day_ahead(24);
    let prepared = prepare_fleet(&fleet.sites, &series, Target::Load, split).unwrap();
    let with_load = fleet.sites.iter().filter(|s| s.kind.has_load()).count();
    assert_eq!(prepared.len(), with_load - 1);
    assert_eq!(prepared.skipped.len(), 1);
    let skipped = &prepared.skipped[0];
    assert_eq!(skipped.site_id, fleet.sites[1].site_id);
    assert!(skipped.reason.contains("no complete"), "{}", skipped.reason);
    assert!(prepared.iter().all(|p| p.site.site_id != skipped.site_id));
    // `datasets validate` warns about it up front, naming the target.
    let report = site_quality_report(&series[1].telemetry, Resolution::Hour, &fleet.sites[1]);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].starts_with("load_kw: will be skipped"),
        "{}",
        report.warnings[0]
    );
}

/// nMAE of "same hour yesterday" over a regular load series.
fn seasonal_naive_day_nmae(load: &[Option<f64>]) -> f64 {
    let (mut err, mut abs, mut n) = (0.0, 0.0, 0usize);
    for i in 24..load.len() {
        if let (Some(now), Some(before)) = (load[i], load[i - 24]) {
            err += (now - before).abs();
            abs += now.abs();
            n += 1;
        }
    }
    assert!(n > 1000);
    err / abs
}

#[test]
fn realistic_homes_are_as_hard_to_forecast_as_real_ones() {
    let (realistic, clean) = (realistic_year(), clean_year());
    let (real_series, clean_series) = (realistic.regular_series(), clean.regular_series());
    let mut homes = 0;
    for (i, meta) in realistic.sites.iter().enumerate() {
        // Net-metered homes export no consumption (see the net meter test).
        if meta.sector != Sector::Residential || realistic.telemetry[i].load_kw.is_none() {
            continue;
        }
        homes += 1;
        let hard = seasonal_naive_day_nmae(real_series[i].telemetry.load_kw.as_ref().unwrap());
        let easy = seasonal_naive_day_nmae(clean_series[i].telemetry.load_kw.as_ref().unwrap());
        eprintln!(
            "{} {:?}: seasonal naive (day) nMAE realistic {hard:.3}, clean {easy:.3}",
            meta.site_id, meta.kind
        );
        // Real single homes: good day-ahead models reach 30-60% nMAE, naive does worse.
        assert!(
            (0.35..1.2).contains(&hard),
            "{}: seasonal naive nMAE {hard:.3} outside the range of real homes",
            meta.site_id
        );
        assert!(
            hard > 1.3 * easy,
            "{}: {hard:.3} vs clean {easy:.3}",
            meta.site_id
        );
        let load = real_series[i].telemetry.load_kw.as_ref().unwrap();
        let values: Vec<f64> = load.iter().flatten().copied().collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let peak = values.iter().copied().fold(0.0, f64::max);
        assert!(
            values.iter().all(|&v| v > 0.0),
            "{}: load must stay positive",
            meta.site_id
        );
        assert!(
            peak > 3.0 * mean,
            "{}: peak {peak:.2} vs mean {mean:.2}",
            meta.site_id
        );
    }
    assert!(homes >= 5, "{homes} homes");
}

#[test]
fn realistic_exports_have_no_weather_daylight_only_inverters_and_outages() {
    let fleet = realistic_year();
    let step = Resolution::Hour.seconds();
    let mut outage_sites = 0;
    for (meta, t) in fleet.sites.iter().zip(&fleet.telemetry) {
        assert!(t.temperature_c.is_none() && t.temperature_forecast_c.is_none());
        assert!(t.ghi_w_m2.is_none() && t.ghi_forecast_w_m2.is_none());
        assert!(t.cloud_cover.is_none() && t.cloud_cover_forecast.is_none());
        if let Some(pv) = &t.pv_kw {
            for (ts, v) in t.timestamps.iter().zip(pv) {
                let day = is_daylight(meta.latitude, meta.longitude, *ts, step);
                assert_eq!(
                    v.is_some(),
                    day,
                    "{} at {ts}: logged iff the sun is up",
                    meta.site_id
                );
            }
        }
        if meta.kind == SiteKind::PvPlant {
            // No load meter: a sleeping inverter writes no row at all.
            assert!(
                t.len() < 365 * 24 * 3 / 4,
                "{}: {} rows",
                meta.site_id,
                t.len()
            );
        }
        let expected = if meta.kind == SiteKind::PvPlant {
            t.len()
        } else {
            365 * 24
        };
        if t.len() < expected {
            outage_sites += 1;
        }
    }
    assert!(outage_sites >= 3, "{outage_sites} sites with outages");
    // Every site still trains on both targets it measures: nothing is lost to the gaps.
    let series = fleet.regular_series();
    for target in [Target::Load, Target::Pv] {
        let prepared =
            prepare_fleet(&fleet.sites, &series, target, SplitSpec::day_ahead(24)).unwrap();
        assert!(
            prepared.skipped.is_empty(),
            "{target:?}: {:?}",
            prepared.skipped
        );
        assert!(!prepared.is_empty());
    }
}

#[test]
fn the_realistic_profile_is_deterministic_and_degrades_the_clean_twin() {
    let cfg = FleetConfig {
        sites: 6,
        days: 30,
        profile: Profile::Realistic,
        ..FleetConfig::default()
    };
    let a = generate_fleet(&cfg);
    assert_eq!(a, generate_fleet(&cfg));
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(a, single.install(|| generate_fleet(&cfg)));
    let other = generate_fleet(&FleetConfig { seed: 8, ..cfg });
    assert_ne!(a.telemetry, other.telemetry);
    // Same sites and PV systems as the clean fleet of the same seed (net meters add their
    // connection limits).
    let clean = generate_fleet(&FleetConfig {
        profile: Profile::Clean,
        ..cfg
    });
    let without_limits = |sites: &[datasets::SiteMetadata]| -> Vec<datasets::SiteMetadata> {
        sites
            .iter()
            .cloned()
            .map(|mut s| {
                s.import_limit_kw = None;
                s.export_limit_kw = None;
                s
            })
            .collect()
    };
    assert_eq!(without_limits(&a.sites), clean.sites);
    for (r, c) in a.telemetry.iter().zip(&clean.telemetry) {
        let (Some(rp), Some(cp)) = (&r.pv_kw, &c.pv_kw) else {
            continue;
        };
        for (ts, v) in r.timestamps.iter().zip(rp) {
            if let Some(v) = v {
                let k = c.timestamps.iter().position(|t| t == ts).unwrap();
                assert_eq!(Some(*v), cp[k]);
            }
        }
    }
}

#[test]
fn net_metered_homes_read_import_minus_export_and_pass_validation() {
    let fleet = realistic_year();
    let mut net_metered = 0;
    for (meta, t) in fleet.sites.iter().zip(&fleet.telemetry) {
        let Some(net) = &t.net_load_kw else {
            assert!(meta.import_limit_kw.is_none() && meta.export_limit_kw.is_none());
            continue;
        };
        net_metered += 1;
        assert_eq!(meta.kind, SiteKind::Prosumer);
        assert!(
            t.load_kw.is_none(),
            "{}: a net meter replaces the load meter",
            meta.site_id
        );
        assert!(
            t.pv_kw.is_some(),
            "{}: the inverter still logs",
            meta.site_id
        );
        let values: Vec<f64> = net.iter().flatten().copied().collect();
        assert!(
            values.iter().any(|&v| v < -0.5),
            "{}: never exports",
            meta.site_id
        );
        assert!(
            values.iter().any(|&v| v > 0.3),
            "{}: never imports",
            meta.site_id
        );
        assert_eq!(meta.export_limit_kw, Some(meta.capacity_kw));
    }
    assert!(net_metered >= 2, "{net_metered} net-metered homes");
    // What the generator writes, the validator accepts (limits, night gaps, outages), and net
    // load trains like load.
    let dir = tempfile::tempdir().unwrap();
    datasets::writer::write_fleet_dir(dir.path(), &fleet.sites, &fleet.telemetry).unwrap();
    let read = datasets::reader::read_fleet_dir(dir.path()).unwrap();
    assert_eq!(read.sites, fleet.sites);
    let prepared = prepare_fleet(
        &fleet.sites,
        &fleet.regular_series(),
        Target::NetLoad,
        SplitSpec::day_ahead(24),
    )
    .unwrap();
    assert_eq!(prepared.len(), net_metered);
    assert!(prepared.skipped.is_empty(), "{:?}", prepared.skipped);
    for site in &prepared {
        assert!(site.train.len() > 4000);
        assert!(site.train.y.iter().any(|&v| v < 0.0));
    }
}

#[test]
fn local_time_exports_with_both_dst_switches_import_back_exactly() {
    use datasets::export::{export_column, write_local_csv};
    use datasets::import::{CsvImport, PowerUnit, import_csv, merge_columns};

    let fleet = realistic_year();
    let dir = tempfile::tempdir().unwrap();
    for (meta, t) in fleet.sites.iter().zip(&fleet.telemetry) {
        let tz = meta.tz().unwrap();
        let path = dir.path().join(format!("{}.csv", meta.site_id));
        write_local_csv(&path, t, tz).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // Every site of the fleet is in a European zone: 2024-10-27 02:xx appears twice,
        // 2024-03-31 02:xx never (unless an outage took those rows).
        if t.timestamps
            .iter()
            .any(|&ts| (1_729_987_200..1_729_994_400).contains(&ts))
        {
            let repeated = text
                .lines()
                .filter(|l| l.starts_with("2024-10-27 02:00:00"))
                .count();
            assert_eq!(repeated, 2, "{}: the repeated hour", meta.site_id);
        }
        assert!(
            !text.contains("2024-03-31 02:"),
            "{}: a skipped hour",
            meta.site_id
        );
        let parts = t
            .columns()
            .into_iter()
            .filter(|(name, values)| {
                datasets::schema::TARGET_COLUMNS.contains(name) && values.is_some()
            })
            .map(|(name, _)| {
                let spec = CsvImport {
                    site_id: meta.site_id.clone(),
                    timestamp_column: "timestamp".into(),
                    value_column: export_column(name),
                    target_column: name.to_string(),
                    unit: PowerUnit::W,
                    source_timezone: Some(tz),
                    timestamp_format: None,
                    interval_end: false,
                };
                import_csv(&path, &spec).unwrap()
            })
            .collect();
        let imported = merge_columns(parts).unwrap();
        assert_eq!(
            imported.timestamps, t.timestamps,
            "{}: instants",
            meta.site_id
        );
        for target in Target::ALL {
            let (Some(a), Some(b)) = (target.values(&imported), target.values(t)) else {
                assert_eq!(
                    target.values(&imported).is_some(),
                    target.values(t).is_some()
                );
                continue;
            };
            for (x, y) in a.iter().zip(b) {
                match (x, y) {
                    (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0)),
                    _ => assert_eq!(x.is_some(), y.is_some(), "{}", meta.site_id),
                }
            }
        }
    }
}
