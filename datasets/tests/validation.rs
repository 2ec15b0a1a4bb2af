//! Every validation error of the Parquet reader, each on a real file written with arrow:
//! the variant, and that the message names the file, the column and the row.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, DictionaryArray, Float32Array, Float64Array, Int32Array, Int64Array,
    LargeStringArray, NullArray, RecordBatch, StringArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use datasets::metadata::{METADATA_FILE, write_metadata};
use datasets::reader::{read_fleet_dir, read_telemetry};
use datasets::{DatasetError, Resolution, Sector, SiteKind, SiteMetadata};
use parquet::arrow::ArrowWriter;

/// 2024-01-01T00:00:00Z
const START_S: i64 = 1_704_067_200;

fn site(site_id: &str, kind: SiteKind, capacity_kw: f64) -> SiteMetadata {
    SiteMetadata {
        site_id: site_id.into(),
        kind,
        sector: Sector::Residential,
        latitude: 52.5,
        longitude: 13.4,
        capacity_kw,
        timezone: "Europe/Berlin".into(),
        pv_tilt_deg: 30.0,
        pv_azimuth_deg: 180.0,
        import_limit_kw: None,
        export_limit_kw: None,
    }
}

/// A building `b1`, a prosumer `p1` with 10 kW of PV and a 100 kW PV plant `pv1`.
fn fleet() -> Vec<SiteMetadata> {
    vec![
        site("b1", SiteKind::Building, 0.0),
        site("p1", SiteKind::Prosumer, 10.0),
        site("pv1", SiteKind::PvPlant, 100.0),
    ]
}

/// Columns of a file under construction.
#[derive(Default)]
struct Table(Vec<(Field, ArrayRef)>);

impl Table {
    fn with(mut self, field: Field, array: ArrayRef) -> Self {
        self.0.push((field, array));
        self
    }
    /// `timestamp` in UTC milliseconds.
    fn times(self, unix_s: &[Option<i64>]) -> Self {
        let ms: Vec<Option<i64>> = unix_s.iter().map(|t| t.map(|t| t * 1000)).collect();
        self.with(
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Arc::new(TimestampMillisecondArray::from(ms).with_timezone("UTC")),
        )
    }
    fn hourly(self, n: i64) -> Self {
        self.times(&(0..n).map(|i| Some(START_S + i * 3600)).collect::<Vec<_>>())
    }
    fn sites(self, ids: &[Option<&str>]) -> Self {
        self.with(
            Field::new("site_id", DataType::Utf8, true),
            Arc::new(StringArray::from(ids.to_vec())),
        )
    }
    fn site(self, id: &str, n: usize) -> Self {
        self.sites(&vec![Some(id); n])
    }
    fn f64(self, name: &str, values: &[Option<f64>]) -> Self {
        self.with(
            Field::new(name, DataType::Float64, true),
            Arc::new(Float64Array::from(values.to_vec())),
        )
    }
    fn write(self, dir: &Path, name: &str) -> PathBuf {
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = self.0.into_iter().unzip();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
        let path = dir.join(name);
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        path
    }
}

fn ones(n: usize) -> Vec<Option<f64>> {
    vec![Some(1.0); n]
}

/// A valid hourly building file with one load value replaced.
fn load_with(dir: &Path, row: usize, value: Option<f64>) -> PathBuf {
    let mut load = ones(6);
    load[row] = value;
    Table::default()
        .hourly(6)
        .site("b1", 6)
        .f64("load_kw", &load)
        .write(dir, "b1.parquet")
}

fn read_err(path: &Path) -> DatasetError {
    read_telemetry(path, &fleet()).expect_err("the file should be refused")
}

/// The message names the file, the column and (for row errors) the row.
fn assert_names(err: &DatasetError, path: &Path, column: &str, row: Option<usize>) {
    let message = err.to_string();
    let file = path.file_name().unwrap().to_str().unwrap();
    assert!(message.contains(file), "file `{file}` not named: {message}");
    assert!(
        message.contains(&format!("`{column}`")),
        "column `{column}` not named: {message}"
    );
    if let Some(row) = row {
        assert!(
            message.contains(&format!("row {row}:")),
            "row {row} not named: {message}"
        );
    }
}

#[test]
fn csv_renamed_and_truncated_files_are_not_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("export.parquet");
    std::fs::write(
        &csv,
        "timestamp,site_id,load_kw\n2024-01-01T00:00:00Z,b1,1.0\n",
    )
    .unwrap();
    let err = read_err(&csv);
    assert!(matches!(err, DatasetError::NotParquet { .. }), "{err:?}");
    assert!(err.to_string().contains("export.parquet"), "{err}");

    let good = load_with(dir.path(), 0, Some(1.0));
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_err(&truncated);
    assert!(matches!(err, DatasetError::NotParquet { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated.parquet"), "{err}");

    let empty = dir.path().join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(read_err(&empty), DatasetError::NotParquet { .. }));
}

#[test]
fn misspelled_columns_are_missing_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = Table::default()
        .hourly(3)
        .site("b1", 3)
        .f64("load_kW", &ones(3))
        .write(dir.path(), "case.parquet");
    let err = read_err(&path);
    match &err {
        DatasetError::MissingColumn { column, hint, .. } => {
            assert_eq!(column, "load_kw");
            assert!(
                hint.contains("`load_kW`") && hint.contains("case-sensitive"),
                "{hint}"
            );
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    assert_names(&err, &path, "load_kw", None);

    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
        Table::default().hourly(3).0.into_iter().unzip();
    let renamed = Field::new("timestmap", fields[0].data_type().clone(), true);
    let path = Table::default()
        .with(renamed, arrays[0].clone())
        .site("b1", 3)
        .f64("load_kw", &ones(3))
        .write(dir.path(), "typo.parquet");
    let err = read_err(&path);
    match &err {
        DatasetError::MissingColumn { column, hint, .. } => {
            assert_eq!(column, "timestamp");
            assert!(hint.contains("`timestmap`"), "{hint}");
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    assert_names(&err, &path, "timestamp", None);

    let path = Table::default()
        .hourly(3)
        .f64("load_kw", &ones(3))
        .write(dir.path(), "nosite.parquet");
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::MissingColumn { column, .. } if column == "site_id"),
        "{err:?}"
    );
    assert_names(&err, &path, "site_id", None);
}

#[test]
fn unknown_extra_columns_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = Table::default()
        .hourly(3)
        .site("b1", 3)
        .f64("load_kw", &ones(3))
        .f64("humidity", &ones(3))
        .write(dir.path(), "extra.parquet");
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::UnknownColumn { column, .. } if column == "humidity"),
        "{err:?}"
    );
    assert_names(&err, &path, "humidity", None);
    assert!(err.to_string().contains("allowed columns"), "{err}");

    // A near-duplicate of a column that is present is still reported, not dropped.
    let path = Table::default()
        .hourly(3)
        .site("b1", 3)
        .f64("load_kw", &ones(3))
        .f64("load_kW", &ones(3))
        .write(dir.path(), "twice.parquet");
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::UnknownColumn { column, .. } if column == "load_kW"),
        "{err:?}"
    );
    assert!(err.to_string().contains("did you mean `load_kw`"), "{err}");
}

#[test]
fn a_file_without_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = Table::default()
        .hourly(3)
        .site("b1", 3)
        .f64("temperature_c", &ones(3))
        .write(dir.path(), "w.parquet");
    let err = read_err(&path);
    assert!(matches!(err, DatasetError::NoTarget { .. }), "{err:?}");
    assert!(
        err.to_string().contains("w.parquet") && err.to_string().contains("`load_kw`"),
        "{err}"
    );
}

#[test]
fn wrong_types_name_the_column_and_both_types() {
    let dir = tempfile::tempdir().unwrap();
    let ints = Table::default()
        .hourly(3)
        .site("b1", 3)
        .with(
            Field::new("load_kw", DataType::Int64, true),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        )
        .write(dir.path(), "ints.parquet");
    let err = read_err(&ints);
    assert!(
        matches!(&err, DatasetError::WrongType { column, found, .. } if column == "load_kw" && found == "Int64"),
        "{err:?}"
    );
    assert_names(&err, &ints, "load_kw", None);

    let text_times = Table::default()
        .with(
            Field::new("timestamp", DataType::Utf8, true),
            Arc::new(StringArray::from(vec!["2024-01-01"; 3])),
        )
        .site("b1", 3)
        .f64("load_kw", &ones(3))
        .write(dir.path(), "text.parquet");
    let err = read_err(&text_times);
    assert!(
        matches!(&err, DatasetError::WrongType { column, .. } if column == "timestamp"),
        "{err:?}"
    );
    assert_names(&err, &text_times, "timestamp", None);

    let naive = Table::default()
        .with(
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Arc::new(TimestampMillisecondArray::from(vec![
                START_S * 1000,
                (START_S + 3600) * 1000,
            ])),
        )
        .site("b1", 2)
        .f64("load_kw", &ones(2))
        .write(dir.path(), "naive.parquet");
    let err = read_err(&naive);
    assert!(
        matches!(&err, DatasetError::WrongType { column, .. } if column == "timestamp"),
        "{err:?}"
    );
    assert!(err.to_string().contains("tz-naive"), "{err}");

    let numeric_ids = Table::default()
        .hourly(3)
        .with(
            Field::new("site_id", DataType::Int32, true),
            Arc::new(Int32Array::from(vec![1, 1, 1])),
        )
        .f64("load_kw", &ones(3))
        .write(dir.path(), "ids.parquet");
    let err = read_err(&numeric_ids);
    assert!(
        matches!(&err, DatasetError::WrongType { column, .. } if column == "site_id"),
        "{err:?}"
    );
    assert_names(&err, &numeric_ids, "site_id", None);
}

#[test]
fn null_timestamps_and_site_ids_name_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let times = [
        Some(START_S),
        Some(START_S + 3600),
        Some(START_S + 7200),
        None,
    ];
    let path = Table::default()
        .times(&times)
        .site("b1", 4)
        .f64("load_kw", &ones(4))
        .write(dir.path(), "t.parquet");
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::NullValue { column, row: 3, .. } if column == "timestamp"),
        "{err:?}"
    );
    assert_names(&err, &path, "timestamp", Some(3));

    let path = Table::default()
        .hourly(4)
        .sites(&[Some("b1"), Some("b1"), None, Some("b1")])
        .f64("load_kw", &ones(4))
        .write(dir.path(), "s.parquet");
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::NullValue { column, row: 2, .. } if column == "site_id"),
        "{err:?}"
    );
    assert_names(&err, &path, "site_id", Some(2));
}

#[test]
fn duplicate_and_backwards_timestamps_name_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let hour = |i: i64| Some(START_S + i * 3600);
    let path = Table::default()
        .times(&[hour(0), hour(1), hour(2), hour(3), hour(3)])
        .site("b1", 5)
        .f64("load_kw", &ones(5))
        .write(dir.path(), "dup.parquet");
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::DuplicateTimestamp { row: 4, site, .. } if site == "b1"),
        "{err:?}"
    );
    assert_names(&err, &path, "timestamp", Some(4));
    assert!(err.to_string().contains("2024-01-01T03:00:00Z"), "{err}");

    let path = Table::default()
        .times(&[hour(0), hour(1), hour(2), hour(4), hour(3)])
        .site("b1", 5)
        .f64("load_kw", &ones(5))
        .write(dir.path(), "back.parquet");
    let err = read_err(&path);
    assert!(
        matches!(err, DatasetError::NonMonotonicTimestamp { row: 4, .. }),
        "{err:?}"
    );
    assert_names(&err, &path, "timestamp", Some(4));
}

fn resolution_err(dir: &Path, name: &str, offsets_s: &[i64]) -> (PathBuf, DatasetError) {
    let times: Vec<Option<i64>> = offsets_s.iter().map(|o| Some(START_S + o)).collect();
    let n = times.len();
    let path = Table::default()
        .times(&times)
        .site("b1", n)
        .f64("load_kw", &ones(n))
        .write(dir, name);
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::Resolution { site, .. } if site == "b1"),
        "{err:?}"
    );
    (path, err)
}

#[test]
fn unknown_mixed_and_off_grid_resolutions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, err) = resolution_err(dir.path(), "seven.parquet", &[0, 420, 840, 1260, 1680]);
    assert_names(&err, &path, "timestamp", Some(1));
    assert!(
        err.to_string().contains("unknown resolution") && err.to_string().contains("7 min"),
        "{err}"
    );

    // Quarter-hourly with one 20-minute step: not a multiple of the base step.
    let (path, err) = resolution_err(
        dir.path(),
        "mixed.parquet",
        &[0, 900, 1800, 2700, 3900, 4800],
    );
    assert_names(&err, &path, "timestamp", Some(4));
    assert!(err.to_string().contains("mixed resolution"), "{err}");

    // Hourly, but at five past the hour.
    let (path, err) = resolution_err(dir.path(), "offgrid.parquet", &[300, 3900, 7500]);
    assert_names(&err, &path, "timestamp", Some(0));
    assert!(err.to_string().contains("off the 1h grid"), "{err}");

    let (path, err) = resolution_err(dir.path(), "single.parquet", &[0]);
    assert_names(&err, &path, "timestamp", Some(0));

    // Half a second past the hour is off every grid.
    let (path, err) = {
        let path = Table::default()
            .with(
                Field::new(
                    "timestamp",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                Arc::new(
                    TimestampMillisecondArray::from(vec![
                        START_S * 1000,
                        START_S * 1000 + 3_600_500,
                    ])
                    .with_timezone("UTC"),
                ),
            )
            .site("b1", 2)
            .f64("load_kw", &ones(2))
            .write(dir.path(), "fraction.parquet");
        let err = read_err(&path);
        (path, err)
    };
    assert!(matches!(err, DatasetError::Resolution { .. }), "{err:?}");
    assert_names(&err, &path, "timestamp", Some(1));
    assert!(err.to_string().contains("01:00:00Z + 0.5 s"), "{err}");
}

#[test]
fn gaps_that_are_whole_steps_stay_missing() {
    let dir = tempfile::tempdir().unwrap();
    let quarter = |i: i64| Some(START_S + i * 900);
    let times = [
        quarter(0),
        quarter(1),
        quarter(2),
        quarter(6),
        quarter(7),
        quarter(12),
    ];
    let path = Table::default()
        .times(&times)
        .site("b1", 6)
        .f64("load_kw", &ones(6))
        .write(dir.path(), "gaps.parquet");
    let sites = read_telemetry(&path, &fleet()).unwrap();
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0].resolution, Resolution::Min15);
    assert_eq!(
        sites[0].telemetry.timestamps,
        times.iter().map(|t| t.unwrap()).collect::<Vec<_>>()
    );
}

#[test]
fn non_finite_values_name_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    for (row, value) in [(1, f64::NAN), (3, f64::INFINITY), (5, f64::NEG_INFINITY)] {
        let path = load_with(dir.path(), row, Some(value));
        let err = read_err(&path);
        assert!(
            matches!(&err, DatasetError::NonFinite { column, row: r, .. } if column == "load_kw" && *r == row),
            "{err:?}"
        );
        assert_names(&err, &path, "load_kw", Some(row));
    }
    let mut temperature = ones(4);
    temperature[2] = Some(f64::NAN);
    let path = Table::default()
        .hourly(4)
        .site("p1", 4)
        .f64("pv_kw", &ones(4))
        .f64("temperature_c", &temperature)
        .write(dir.path(), "weather.parquet");
    let err = read_err(&path);
    assert!(
        matches!(err, DatasetError::NonFinite { row: 2, .. }),
        "{err:?}"
    );
    assert_names(&err, &path, "temperature_c", Some(2));
}

/// One column of `p1` (prosumer, 10 kW PV) with `value` at row 2.
fn prosumer_with(dir: &Path, column: &str, value: f64) -> (PathBuf, DatasetError) {
    let mut values = vec![Some(0.5); 4];
    values[2] = Some(value);
    let mut table = Table::default().hourly(4).site("p1", 4);
    if column != "pv_kw" {
        table = table.f64("pv_kw", &[Some(1.0); 4]);
    }
    let path = table
        .f64(column, &values)
        .write(dir, &format!("{column}.parquet"));
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::Impossible { column: c, row: 2, .. } if c == column),
        "{column}: {err:?}"
    );
    assert_names(&err, &path, column, Some(2));
    (path, err)
}

#[test]
fn impossible_values_name_column_row_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_, err) = prosumer_with(dir.path(), "pv_kw", -0.5);
    assert!(err.to_string().contains("-0.05"), "{err}");
    // 10 kW x 1.15 = 11.5 kW is the most PV a 10 kW array may report.
    let (_, err) = prosumer_with(dir.path(), "pv_kw", 11.6);
    assert!(err.to_string().contains("capacity 10 kW"), "{err}");
    let (_, err) = prosumer_with(dir.path(), "load_kw", -1.0);
    assert!(err.to_string().contains("negative load"), "{err}");
    let (_, err) = prosumer_with(dir.path(), "temperature_c", 80.0);
    assert!(err.to_string().contains("[-90, 60]"), "{err}");
    let (_, err) = prosumer_with(dir.path(), "cloud_cover", 60.0);
    assert!(err.to_string().contains("divide percent by 100"), "{err}");
    prosumer_with(dir.path(), "ghi_forecast_w_m2", 2000.0);

    // Within tolerance: a little standby draw and a little over-irradiance.
    let path = Table::default()
        .hourly(3)
        .site("p1", 3)
        .f64("pv_kw", &[Some(-0.04), Some(11.4), Some(0.0)])
        .write(dir.path(), "tolerated.parquet");
    assert_eq!(
        read_telemetry(&path, &fleet()).unwrap()[0].telemetry.pv_kw,
        Some(vec![Some(-0.04), Some(11.4), Some(0.0)])
    );
}

#[test]
fn values_a_site_kind_cannot_have_are_impossible() {
    let dir = tempfile::tempdir().unwrap();
    let path = Table::default()
        .hourly(3)
        .site("b1", 3)
        .f64("load_kw", &ones(3))
        .f64("pv_kw", &[None, Some(0.3), None])
        .write(dir.path(), "building_pv.parquet");
    let err = read_err(&path);
    assert!(
        matches!(err, DatasetError::Impossible { row: 1, .. }),
        "{err:?}"
    );
    assert_names(&err, &path, "pv_kw", Some(1));
    assert!(err.to_string().contains("without PV"), "{err}");

    let path = Table::default()
        .hourly(3)
        .site("pv1", 3)
        .f64("pv_kw", &ones(3))
        .f64("load_kw", &[None, None, Some(2.0)])
        .write(dir.path(), "plant_load.parquet");
    let err = read_err(&path);
    assert!(
        matches!(err, DatasetError::Impossible { row: 2, .. }),
        "{err:?}"
    );
    assert_names(&err, &path, "load_kw", Some(2));
    assert!(err.to_string().contains("meters no load"), "{err}");
}

#[test]
fn a_site_without_metadata_names_its_first_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = Table::default()
        .hourly(4)
        .sites(&[Some("b1"), Some("b1"), Some("ghost"), Some("b1")])
        .f64("load_kw", &ones(4))
        .write(dir.path(), "ghost.parquet");
    let err = read_err(&path);
    assert!(
        matches!(&err, DatasetError::UnknownSite { site, row: 2, .. } if site == "ghost"),
        "{err:?}"
    );
    assert_names(&err, &path, "site_id", Some(2));
}

#[test]
fn rows_are_counted_across_batches_and_interleaved_sites() {
    let dir = tempfile::tempdir().unwrap();
    // Two sites interleaved row by row over 20,000 rows: more than two record batches.
    let n = 20_000usize;
    let times: Vec<Option<i64>> = (0..n)
        .map(|i| Some(START_S + (i / 2) as i64 * 900))
        .collect();
    let ids: Vec<Option<&str>> = (0..n)
        .map(|i| Some(if i % 2 == 0 { "b1" } else { "p1" }))
        .collect();
    let mut load = ones(n);
    load[17_001] = Some(f64::NAN);
    let path = Table::default()
        .times(&times)
        .sites(&ids)
        .f64("load_kw", &load)
        .write(dir.path(), "big.parquet");
    let err = read_err(&path);
    assert!(
        matches!(err, DatasetError::NonFinite { row: 17_001, .. }),
        "{err:?}"
    );
    assert_names(&err, &path, "load_kw", Some(17_001));

    load[17_001] = Some(1.0);
    let path = Table::default()
        .times(&times)
        .sites(&ids)
        .f64("load_kw", &load)
        .write(dir.path(), "big.parquet");
    let sites = read_telemetry(&path, &fleet()).unwrap();
    let ids: Vec<&str> = sites.iter().map(|s| s.telemetry.site_id.as_str()).collect();
    assert_eq!(ids, ["b1", "p1"]);
    assert!(
        sites
            .iter()
            .all(|s| s.telemetry.len() == n / 2 && s.resolution == Resolution::Min15)
    );
}

#[test]
fn accepted_encodings_read_as_f64_utc_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let seconds: Vec<i64> = (0..3).map(|i| START_S + i * 1800).collect();
    let keys = Int32Array::from(vec![0, 0, 0]);
    let dictionary =
        DictionaryArray::<Int32Type>::try_new(keys, Arc::new(StringArray::from(vec!["p1"])))
            .unwrap();
    let path = Table::default()
        .with(
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Second, Some("+00:00".into())),
                false,
            ),
            Arc::new(TimestampSecondArray::from(seconds.clone()).with_timezone("+00:00")),
        )
        .with(
            Field::new("site_id", dictionary.data_type().clone(), false),
            Arc::new(dictionary),
        )
        .with(
            Field::new("pv_kw", DataType::Float32, true),
            Arc::new(Float32Array::from(vec![Some(0.5f32), None, Some(2.25)])),
        )
        .with(
            Field::new("cloud_cover", DataType::Null, true),
            Arc::new(NullArray::new(3)),
        )
        .write(dir.path(), "dict.parquet");
    let site = &read_telemetry(&path, &fleet()).unwrap()[0];
    assert_eq!(site.resolution, Resolution::Min30);
    assert_eq!(site.telemetry.timestamps, seconds);
    assert_eq!(
        site.telemetry.pv_kw,
        Some(vec![Some(0.5), None, Some(2.25)])
    );
    assert_eq!(site.telemetry.cloud_cover, None);

    // Nanoseconds labelled with another zone are still UTC instants.
    let nanos: Vec<i64> = seconds.iter().map(|s| s * 1_000_000_000).collect();
    let path = Table::default()
        .with(
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("Europe/Berlin".into())),
                false,
            ),
            Arc::new(TimestampNanosecondArray::from(nanos).with_timezone("Europe/Berlin")),
        )
        .with(
            Field::new("site_id", DataType::LargeUtf8, false),
            Arc::new(LargeStringArray::from(vec!["b1"; 3])),
        )
        .f64("load_kw", &[Some(1.0), Some(2.0), None])
        .write(dir.path(), "large.parquet");
    let site = &read_telemetry(&path, &fleet()).unwrap()[0];
    assert_eq!(site.telemetry.timestamps, seconds);
    assert_eq!(
        site.telemetry.load_kw,
        Some(vec![Some(1.0), Some(2.0), None])
    );
}

#[test]
fn fleet_dirs_refuse_a_site_twice_and_metadata_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let sites = vec![
        site("b1", SiteKind::Building, 0.0),
        site("p1", SiteKind::Prosumer, 10.0),
    ];
    write_metadata(&dir.path().join(METADATA_FILE), &sites).unwrap();
    Table::default()
        .hourly(3)
        .site("b1", 3)
        .f64("load_kw", &ones(3))
        .write(dir.path(), "a.parquet");
    let err = read_fleet_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::Metadata { reason, .. } if reason.contains("`p1` has no telemetry")),
        "{err:?}"
    );
    assert!(err.to_string().contains(METADATA_FILE), "{err}");

    Table::default()
        .hourly(3)
        .site("p1", 3)
        .f64("load_kw", &ones(3))
        .write(dir.path(), "b.parquet");
    let fleet = read_fleet_dir(dir.path()).unwrap();
    assert_eq!(
        fleet
            .telemetry
            .iter()
            .map(|s| s.telemetry.site_id.as_str())
            .collect::<Vec<_>>(),
        ["b1", "p1"]
    );

    Table::default()
        .hourly(3)
        .site("b1", 3)
        .f64("load_kw", &ones(3))
        .write(dir.path(), "c.parquet");
    let err = read_fleet_dir(dir.path()).unwrap_err();
    match &err {
        DatasetError::DuplicateSite { path, site, first } => {
            assert_eq!(site, "b1");
            assert!(
                first.ends_with("a.parquet") && path.ends_with("c.parquet"),
                "{err}"
            );
        }
        other => panic!("expected DuplicateSite, got {other:?}"),
    }
}

#[test]
fn net_load_may_be_negative_within_the_site_grid_limits() {
    let dir = tempfile::tempdir().unwrap();
    // A prosumer's utility meter: importing at night, exporting at noon.
    let net = [Some(0.8), Some(-3.5), Some(-6.0), Some(1.2)];
    let path = Table::default()
        .hourly(4)
        .site("p1", 4)
        .f64("net_load_kw", &net)
        .write(dir.path(), "net.parquet");
    let read = read_telemetry(&path, &fleet()).unwrap();
    assert_eq!(read[0].telemetry.net_load_kw, Some(net.to_vec()));
    assert_eq!(read[0].telemetry.load_kw, None);

    // With declared limits, a reading beyond 1.1 x the export limit is impossible.
    let mut sites = fleet();
    sites[1].export_limit_kw = Some(5.0);
    sites[1].import_limit_kw = Some(17.0);
    let err = read_telemetry(&path, &sites).expect_err("6 kW export over a 5 kW limit");
    assert!(
        matches!(err, DatasetError::Impossible { row: 2, .. }),
        "{err:?}"
    );
    assert_names(&err, &path, "net_load_kw", Some(2));
    assert!(err.to_string().contains("export_limit_kw 5 kW"), "{err}");
    sites[1].export_limit_kw = Some(5.5);
    assert!(read_telemetry(&path, &sites).is_ok(), "6.0 <= 1.1 x 5.5");

    // A PV plant has no consumption to net.
    let path = Table::default()
        .hourly(2)
        .site("pv1", 2)
        .f64("net_load_kw", &[Some(-1.0), Some(-2.0)])
        .write(dir.path(), "plant_net.parquet");
    let err = read_err(&path);
    assert_names(&err, &path, "net_load_kw", Some(0));
    assert!(err.to_string().contains("no consumption to net"), "{err}");

    // Limits must be sensible numbers, named in the metadata error.
    let mut bad = fleet();
    bad[1].import_limit_kw = Some(-1.0);
    let err = bad[1].validate(Path::new("sites.json")).unwrap_err();
    assert!(err.to_string().contains("import_limit_kw -1"), "{err}");
}

/// A Parquet file whose definition levels run past their page makes the `parquet` crate's
/// decoder panic (found by fuzzing, `fuzz/corpus/telemetry_parquet/crash-3beb9b...`): the
/// reader turns that into an error naming the file, so one site's corrupt file never crashes a
/// daemon or a command.
#[test]
fn a_file_that_crashes_the_parquet_decoder_is_an_error_naming_it() {
    let fleet = datasets::synth::generate_fleet(&datasets::synth::FleetConfig {
        sites: 2,
        days: 3,
        ..Default::default()
    });
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corrupt-definition-levels.parquet");
    let err = read_telemetry(&path, &fleet.sites).unwrap_err();
    assert!(matches!(err, DatasetError::NotParquet { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("corrupt-definition-levels.parquet"), "{text}");
    assert!(text.contains("the Parquet decoder failed"), "{text}");
}

/// A file on which the `parquet` decoder spins forever (found by fuzzing; the decoder's thrift
/// skip of a corrupt page header never advances) is reported corrupt within the time limit,
/// naming the file, instead of hanging the command or daemon.
#[test]
fn a_file_the_decoder_hangs_on_is_reported_within_the_limit() {
    let fleet = datasets::synth::generate_fleet(&datasets::synth::FleetConfig {
        sites: 2,
        days: 3,
        ..Default::default()
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/decoder-hang.parquet");
    let limit = std::time::Duration::from_secs(3);
    let started = std::time::Instant::now();
    let err = datasets::reader::read_telemetry_within(&path, &fleet.sites, limit).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, DatasetError::NotParquet { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("decoder-hang.parquet") && text.contains("made no progress"),
        "{text}"
    );
    assert!(
        took >= limit,
        "gave up after {took:?}: the decoder did not hang, the test is void"
    );
    assert!(took < limit * 10, "{took:?}");
    // The limit real files get is far longer than the hang's test limit, and grows with size.
    assert!(datasets::reader::decode_time_limit(8_000) >= std::time::Duration::from_secs(60));
    assert!(
        datasets::reader::decode_time_limit(100_000_000)
            > datasets::reader::decode_time_limit(1_000_000)
    );
}
