//! Writing and reading telemetry back, fleet directories, quality reports and CSV import.

use std::path::Path;

use datasets::import::{CsvImport, PowerUnit, import_csv, merge_columns};
use datasets::quality::{Gap, quality_report};
use datasets::reader::{read_fleet_dir, read_telemetry};
use datasets::writer::{write_fleet_dir, write_telemetry};
use datasets::{DatasetError, Resolution, Sector, SiteKind, SiteMetadata, SiteTelemetry};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use proptest::prelude::*;

/// 2024-01-01T00:00:00Z
const START_S: i64 = 1_704_067_200;

fn site(site_id: &str, kind: SiteKind, capacity_kw: f64) -> SiteMetadata {
    SiteMetadata {
        site_id: site_id.into(),
        kind,
        sector: Sector::Commercial,
        latitude: 48.1,
        longitude: 11.6,
        capacity_kw,
        timezone: "Europe/Berlin".into(),
        pv_tilt_deg: 25.0,
        pv_azimuth_deg: 170.0,
        import_limit_kw: None,
        export_limit_kw: None,
    }
}

fn fleet() -> Vec<SiteMetadata> {
    vec![
        site("b1", SiteKind::Building, 0.0),
        site("p1", SiteKind::Prosumer, 12.0),
    ]
}

/// Hourly building load with a 3-hour hole and two unmeasured steps.
fn building() -> SiteTelemetry {
    let mut t = SiteTelemetry::new("b1");
    t.timestamps = (0..48)
        .filter(|i| !(10..13).contains(i))
        .map(|i| START_S + i * 3600)
        .collect();
    t.load_kw = Some(
        (0..t.len())
            .map(|i| (i % 7 != 3).then_some(0.1 + 0.2 * i as f64))
            .collect(),
    );
    t
}

/// Quarter-hourly prosumer with every column.
fn prosumer() -> SiteTelemetry {
    let n = 96;
    let mut t = SiteTelemetry::new("p1");
    t.timestamps = (0..n).map(|i| START_S + i * 900).collect();
    let wave = |scale: f64, offset: f64| -> Option<Vec<Option<f64>>> {
        Some(
            (0..n)
                .map(|i| (i % 11 != 5).then(|| offset + scale * ((i as f64) / 7.0).sin().abs()))
                .collect(),
        )
    };
    t.load_kw = wave(3.3, 0.7);
    t.pv_kw = wave(9.9, 0.0);
    t.temperature_c = wave(12.0, -4.0);
    t.ghi_w_m2 = wave(800.0, 0.0);
    t.cloud_cover = wave(1.0, 0.0);
    t.temperature_forecast_c = wave(11.0, -3.0);
    t.ghi_forecast_w_m2 = wave(700.0, 1.0);
    t.cloud_cover_forecast = wave(0.9, 0.05);
    t
}

#[test]
fn a_multi_site_file_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.parquet");
    let written = vec![prosumer(), building()];
    write_telemetry(&path, &written).unwrap();
    let read = read_telemetry(&path, &fleet()).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].telemetry, written[0]);
    assert_eq!(read[0].resolution, Resolution::Min15);
    assert_eq!(read[1].telemetry, written[1]);
    assert_eq!(read[1].resolution, Resolution::Hour);
    // Only the hidden temporary name was ever used beside the file.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["fleet.parquet"]);
}

#[test]
fn large_files_are_snappy_with_bounded_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.parquet");
    let mut t = SiteTelemetry::new("b1");
    t.timestamps = (0..150_000).map(|i| START_S + i * 900).collect();
    t.load_kw = Some((0..150_000).map(|i| Some(f64::from(i % 100))).collect());
    write_telemetry(&path, std::slice::from_ref(&t)).unwrap();
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
    let metadata = builder.metadata();
    assert_eq!(metadata.num_row_groups(), 3);
    for group in metadata.row_groups() {
        assert!(group.num_rows() <= 65_536);
        assert_eq!(group.column(0).compression(), Compression::SNAPPY);
    }
    assert_eq!(read_telemetry(&path, &fleet()).unwrap()[0].telemetry, t);
}

#[test]
fn the_writer_refuses_what_the_reader_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.parquet");
    let mut short = building();
    short.load_kw.as_mut().unwrap().pop();
    let err = write_telemetry(&path, &[short]).unwrap_err();
    assert!(
        matches!(&err, DatasetError::Write { reason, .. } if reason.contains("`load_kw` has 44 values for 45")),
        "{err}"
    );

    let mut backwards = building();
    backwards.timestamps.swap(0, 1);
    assert!(matches!(
        write_telemetry(&path, &[backwards]),
        Err(DatasetError::Write { .. })
    ));
    assert!(matches!(
        write_telemetry(&path, &[building(), building()]),
        Err(DatasetError::Write { .. })
    ));
    let mut weather_only = SiteTelemetry::new("b1");
    weather_only.timestamps = vec![START_S, START_S + 3600];
    weather_only.temperature_c = Some(vec![Some(1.0), Some(2.0)]);
    assert!(matches!(
        write_telemetry(&path, &[weather_only]),
        Err(DatasetError::Write { .. })
    ));
    // Nothing was left behind, not even a temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let err = write_fleet_dir(dir.path(), &fleet(), &[building()]).unwrap_err();
    assert!(
        err.to_string()
            .contains("`p1` has metadata but no telemetry"),
        "{err}"
    );
    let err =
        write_fleet_dir(dir.path(), &fleet(), &[building(), prosumer(), building()]).unwrap_err();
    assert!(
        err.to_string().contains("`b1` has telemetry twice"),
        "{err}"
    );
    let mut escape = building();
    escape.site_id = "../b1".into();
    let err = write_fleet_dir(
        dir.path(),
        &[site("../b1", SiteKind::Building, 0.0)],
        &[escape],
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot name a file"), "{err}");
}

#[test]
fn a_fleet_dir_round_trips_in_metadata_order() {
    let dir = tempfile::tempdir().unwrap();
    let fleet_dir = dir.path().join("fleet");
    write_fleet_dir(&fleet_dir, &fleet(), &[prosumer(), building()]).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&fleet_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b1.parquet", "p1.parquet", "sites.json"]);
    let data = read_fleet_dir(&fleet_dir).unwrap();
    assert_eq!(data.sites, fleet());
    assert_eq!(data.telemetry[0].telemetry, building());
    assert_eq!(data.telemetry[1].telemetry, prosumer());
    assert_eq!(data.telemetry[0].resolution, Resolution::Hour);
}

#[test]
fn quality_report_counts_steps_coverage_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b1.parquet");
    // 48 hourly steps; rows 5..=9 absent (5 steps), load unmeasured at 20, 21 and 47.
    let mut t = SiteTelemetry::new("b1");
    t.timestamps = (0..48)
        .filter(|i| !(5..=9).contains(i))
        .map(|i| START_S + i * 3600)
        .collect();
    t.load_kw = Some(
        t.timestamps
            .iter()
            .map(|&ts| (![20, 21, 47].contains(&((ts - START_S) / 3600))).then_some(2.0))
            .collect(),
    );
    write_telemetry(&path, std::slice::from_ref(&t)).unwrap();
    let site = &read_telemetry(&path, &fleet()).unwrap()[0];
    let report = quality_report(&site.telemetry, site.resolution);
    assert_eq!(report.first, "2024-01-01T00:00:00Z");
    assert_eq!(report.last, "2024-01-02T23:00:00Z");
    assert_eq!(report.span_days, 2.0);
    assert_eq!(report.expected_steps, 48);
    assert_eq!(report.present_steps, 43);
    assert_eq!(report.coverage.len(), 1);
    assert_eq!(report.coverage[0].column, "load_kw");
    assert!((report.coverage[0].fraction - 40.0 / 48.0).abs() < 1e-12);
    assert_eq!(report.gap_count, 3);
    assert_eq!(report.longest_gap_steps, 5);
    let gap = |start: &str, end: &str, steps| Gap {
        start: start.into(),
        end: end.into(),
        steps,
    };
    assert_eq!(
        report.largest_gaps,
        [
            gap("2024-01-01T05:00:00Z", "2024-01-01T09:00:00Z", 5),
            gap("2024-01-01T20:00:00Z", "2024-01-01T21:00:00Z", 2),
            gap("2024-01-02T23:00:00Z", "2024-01-02T23:00:00Z", 1),
        ]
    );
    let text = report.to_string();
    assert!(
        text.contains("43 of 48 present")
            && text.contains("load_kw 83.3%")
            && text.contains("longest 5"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["resolution"], "1h");
    assert_eq!(json["gap_count"], 3);
}

fn spec(value_column: &str, target: &str, unit: PowerUnit) -> CsvImport {
    CsvImport {
        site_id: "p1".into(),
        timestamp_column: "time".into(),
        value_column: value_column.into(),
        target_column: target.into(),
        unit,
        source_timezone: Some(chrono_tz::Europe::Berlin),
        timestamp_format: None,
        interval_end: false,
    }
}

fn csv(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn csv_import_converts_watts_and_local_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = csv(
        dir.path(),
        "load.csv",
        "time,power_w\n2024-01-15 12:00:00,1500\n2024-01-15 13:00:00,\n2024-01-15 15:00:00, 250.5 \n",
    );
    let t = import_csv(&path, &spec("power_w", "load_kw", PowerUnit::W)).unwrap();
    // Berlin is UTC+1 in January.
    assert_eq!(t.timestamps, [1_705_316_400, 1_705_320_000, 1_705_327_200]);
    assert_eq!(t.load_kw, Some(vec![Some(1.5), None, Some(0.2505)]));
    assert_eq!(t.pv_kw, None);

    // Semicolons with decimal commas, and a custom format.
    let path = csv(
        dir.path(),
        "pv.csv",
        "time;pv\n15.01.2024 12:00;1,25\n15.01.2024 12:15;0,5\n",
    );
    let mut custom = spec("pv", "pv_kw", PowerUnit::Kw);
    custom.timestamp_format = Some("%d.%m.%Y %H:%M".into());
    let t = import_csv(&path, &custom).unwrap();
    assert_eq!(t.timestamps, [1_705_316_400, 1_705_317_300]);
    assert_eq!(t.pv_kw, Some(vec![Some(1.25), Some(0.5)]));
}

#[test]
fn csv_import_reads_energy_per_interval_labelled_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    // A European meter export: semicolons, decimal commas, kWh per quarter hour, each row
    // stamped at the end of its quarter.
    let path = csv(
        dir.path(),
        "meter.csv",
        "time;kwh\n15.01.2024 12:15;0,25\n15.01.2024 12:30;0,5\n15.01.2024 12:45;\n",
    );
    let mut meter = spec("kwh", "load_kw", PowerUnit::Kwh);
    meter.timestamp_format = Some("%d.%m.%Y %H:%M".into());
    meter.interval_end = true;
    let t = import_csv(&path, &meter).unwrap();
    // 12:00-12:15 local (11:00 UTC) onwards; 0.25 kWh in a quarter hour is 1 kW.
    assert_eq!(t.timestamps, [1_705_316_400, 1_705_317_300, 1_705_318_200]);
    assert_eq!(t.load_kw, Some(vec![Some(1.0), Some(2.0), None]));

    // Wh per hour, labelled at the start: Wh == W.
    let path = csv(
        dir.path(),
        "hourly.csv",
        "time,wh\n2024-01-15 12:00:00,1500\n2024-01-15 13:00:00,750\n",
    );
    let t = import_csv(&path, &spec("wh", "load_kw", PowerUnit::Wh)).unwrap();
    assert_eq!(t.load_kw, Some(vec![Some(1.5), Some(0.75)]));

    // Checks run on the converted power and name the row: -4 kWh in 15 min is -16 kW.
    let path = csv(
        dir.path(),
        "bad.csv",
        "time,kwh\n2024-01-15 12:00:00,1\n2024-01-15 12:15:00,-4\n",
    );
    let err = import_csv(&path, &spec("kwh", "load_kw", PowerUnit::Kwh))
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 1") && err.contains("-16"), "{err}");
    assert!("kwh".parse::<PowerUnit>().unwrap().is_energy());
}

#[test]
fn csv_import_handles_dst_with_offsets_and_by_row_order() {
    let dir = tempfile::tempdir().unwrap();
    // Clocks go back at 03:00 CEST on 2024-10-27: with offsets the repeated hour is unambiguous.
    let path = csv(
        dir.path(),
        "offsets.csv",
        "time,kw\n2024-10-27T01:00:00+02:00,1\n2024-10-27T02:00:00+02:00,2\n2024-10-27T02:00:00+01:00,3\n2024-10-27T03:00:00+01:00,4\n",
    );
    let t = import_csv(&path, &spec("kw", "load_kw", PowerUnit::Kw)).unwrap();
    let base = 1_729_983_600; // 2024-10-26T23:00:00Z
    assert_eq!(
        t.timestamps,
        [base, base + 3600, base + 7200, base + 10_800]
    );

    // Without offsets, a local export lists the repeated hour twice, in order: the row before
    // tells the first pass (+02:00) from the second (+01:00).
    let path = csv(
        dir.path(),
        "fallback.csv",
        "time,kw\n2024-10-27 01:00:00,1\n2024-10-27 02:00:00,2\n2024-10-27 02:00:00,3\n2024-10-27 03:00:00,4\n",
    );
    let t = import_csv(&path, &spec("kw", "load_kw", PowerUnit::Kw)).unwrap();
    assert_eq!(
        t.timestamps,
        [base, base + 3600, base + 7200, base + 10_800]
    );
    assert_eq!(
        t.load_kw,
        Some(vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0)])
    );
    // An ambiguous first row has no row before it: refused, naming file, column and row.
    let path = csv(
        dir.path(),
        "ambiguous.csv",
        "time,kw\n2024-10-27 02:30:00,2\n2024-10-27 03:00:00,3\n",
    );
    let err = import_csv(&path, &spec("kw", "load_kw", PowerUnit::Kw)).unwrap_err();
    assert!(matches!(err, DatasetError::Csv { row: 0, .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("ambiguous.csv")
            && message.contains("`time`")
            && message.contains("ambiguous"),
        "{message}"
    );

    let path = csv(
        dir.path(),
        "spring.csv",
        "time,kw\n2024-03-31 01:30:00,1\n2024-03-31 01:45:00,1\n2024-03-31 02:00:00,1\n",
    );
    let err = import_csv(&path, &spec("kw", "load_kw", PowerUnit::Kw)).unwrap_err();
    assert!(matches!(err, DatasetError::Csv { row: 2, .. }), "{err:?}");
    assert!(
        err.to_string().contains("does not exist") && err.to_string().contains("line 4"),
        "{err}"
    );
}

fn import_err(dir: &Path, text: &str, spec: &CsvImport) -> DatasetError {
    import_csv(&csv(dir, "bad.csv", text), spec).expect_err("the CSV should be refused")
}

#[test]
fn bad_csv_rows_name_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let kw = spec("kw", "pv_kw", PowerUnit::Kw);
    let err = import_err(
        dir.path(),
        "time,kw\n2024-01-01 00:00:00,1\n2024-01-01 01:00:00,n/a\n",
        &kw,
    );
    assert!(matches!(err, DatasetError::Csv { row: 1, .. }), "{err:?}");
    assert!(
        err.to_string().contains("column `kw`")
            && err.to_string().contains("`n/a` is not a number"),
        "{err}"
    );

    let err = import_err(
        dir.path(),
        "time,kw\n2024-01-01 00:00:00,1\n2024-01-01 01:00:00,NaN\n",
        &kw,
    );
    assert!(
        matches!(&err, DatasetError::NonFinite { row: 1, column, .. } if column == "kw"),
        "{err:?}"
    );
    let err = import_err(
        dir.path(),
        "time,kw\n2024-01-01 00:00:00,-3\n2024-01-01 01:00:00,1\n",
        &kw,
    );
    assert!(
        matches!(&err, DatasetError::Impossible { row: 0, column, .. } if column == "kw"),
        "{err:?}"
    );
    let err = import_err(
        dir.path(),
        "time,kw\n2024-01-01 01:00:00,1\n2024-01-01 00:00:00,1\n",
        &kw,
    );
    assert!(
        matches!(&err, DatasetError::Csv { row: 1, reason, .. }
            if reason.contains("column `time`") && reason.contains("earlier than")),
        "{err:?}"
    );
    let err = import_err(
        dir.path(),
        "time,kw\n2024-01-01 01:00:00,1\n2024-01-01 01:00:00,1\n",
        &kw,
    );
    assert!(
        matches!(&err, DatasetError::Csv { row: 1, reason, .. }
            if reason.contains("column `time`") && reason.contains("duplicate")),
        "{err:?}"
    );
    let err = import_err(dir.path(), "time,kw\n2024-01-01 01:00:00,1\n,1\n", &kw);
    assert!(
        matches!(&err, DatasetError::NullValue { row: 1, column, .. } if column == "time"),
        "{err:?}"
    );
    let err = import_err(
        dir.path(),
        "time,kw\n2024-01-01 01:00:00,1\n2024-01-01 01:07:00,1\n2024-01-01 01:14:00,1\n",
        &kw,
    );
    assert!(
        matches!(err, DatasetError::Resolution { .. })
            && err.to_string().contains("unknown resolution"),
        "{err}"
    );
    let err = import_err(
        dir.path(),
        "time,kw\n2024-01-01 01:00:00,1\n2024-01-01 02:00:00\n",
        &kw,
    );
    assert!(matches!(err, DatasetError::Csv { row: 1, .. }), "{err:?}");

    let err = import_err(dir.path(), "Time,KW\n2024-01-01 01:00:00,1\n", &kw);
    assert!(
        matches!(&err, DatasetError::MissingColumn { column, hint, .. } if column == "time" && hint.contains("`Time`")),
        "{err:?}"
    );
    let err = import_err(
        dir.path(),
        "time,kw\n",
        &spec("kw", "load_kwh", PowerUnit::Kw),
    );
    assert!(
        matches!(&err, DatasetError::UnknownColumn { hint, .. } if hint.contains("`load_kw`")),
        "{err:?}"
    );
    let err = import_err(
        dir.path(),
        "time,kw\n",
        &spec("kw", "temperature_c", PowerUnit::W),
    );
    assert!(matches!(err, DatasetError::ImportSpec { .. }), "{err:?}");
}

#[test]
fn power_units_parse() {
    assert_eq!("W".parse::<PowerUnit>(), Ok(PowerUnit::W));
    assert_eq!("kW".parse::<PowerUnit>(), Ok(PowerUnit::Kw));
    assert!("MWh".parse::<PowerUnit>().unwrap_err().contains("MWh"));
    assert_eq!(PowerUnit::Kw.to_string(), "kW");
}

#[test]
fn merged_imports_join_on_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let load = import_csv(
        &csv(
            dir.path(),
            "l.csv",
            "time,w\n2024-06-01 10:00:00,1000\n2024-06-01 11:00:00,2000\n",
        ),
        &spec("w", "load_kw", PowerUnit::W),
    )
    .unwrap();
    let pv = import_csv(
        &csv(
            dir.path(),
            "p.csv",
            "time,kw\n2024-06-01 11:00:00,4\n2024-06-01 12:00:00,5\n",
        ),
        &spec("kw", "pv_kw", PowerUnit::Kw),
    )
    .unwrap();
    let merged = merge_columns(vec![load.clone(), pv]).unwrap();
    let base = 1_717_228_800; // 2024-06-01T08:00:00Z = 10:00 CEST
    assert_eq!(merged.timestamps, [base, base + 3600, base + 7200]);
    assert_eq!(merged.load_kw, Some(vec![Some(1.0), Some(2.0), None]));
    assert_eq!(merged.pv_kw, Some(vec![None, Some(4.0), Some(5.0)]));

    assert!(
        matches!(merge_columns(vec![load.clone(), load.clone()]), Err(DatasetError::Merge(m)) if m.contains("`load_kw`"))
    );
    let mut other = load.clone();
    other.site_id = "b1".into();
    assert!(matches!(
        merge_columns(vec![load, other]),
        Err(DatasetError::Merge(_))
    ));
    assert!(matches!(
        merge_columns(Vec::new()),
        Err(DatasetError::Merge(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any hourly telemetry with gaps and missing values survives write and read bit for bit.
    #[test]
    fn write_then_read_is_identity(
        later in proptest::collection::btree_set(60i64..400, 0..50),
        load in proptest::collection::vec(proptest::option::of(0.0f64..5_000.0), 110),
        pv in proptest::collection::vec(proptest::option::of(-0.05f64..13.8), 110),
    ) {
        // Sixty consecutive hours keep the base step at one hour; later steps leave gaps.
        let mut t = SiteTelemetry::new("p1");
        t.timestamps = (0..60).chain(later).map(|s| START_S + s * 3600).collect();
        let n = t.len();
        let mut load = load[..n].to_vec();
        load[0] = Some(1.0);
        let mut pv = pv[..n].to_vec();
        pv[0] = Some(0.0);
        t.load_kw = Some(load);
        t.pv_kw = Some(pv);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p1.parquet");
        write_telemetry(&path, std::slice::from_ref(&t)).unwrap();
        let read = read_telemetry(&path, &fleet()).unwrap();
        prop_assert_eq!(&read[0].telemetry, &t);
        prop_assert_eq!(read[0].resolution, Resolution::Hour);
    }
}
