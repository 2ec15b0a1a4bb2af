//! Writing telemetry to Parquet in the schema [`crate::reader`] accepts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::metadata::{METADATA_FILE, write_metadata};
use crate::schema::{TARGET_COLUMNS, VALUE_COLUMNS, col};
use crate::{DatasetError, SiteMetadata, SiteTelemetry};

/// Rows per record batch handed to the Parquet writer.
const BATCH_ROWS: usize = 8192;
/// Rows per row group: bounds what a reader must hold to decode one group.
const ROW_GROUP_ROWS: usize = 65_536;

fn write_error(path: &Path, reason: impl ToString) -> DatasetError {
    DatasetError::Write {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Refuses telemetry the reader would refuse for its shape: mismatched column lengths,
/// timestamps not strictly increasing or beyond the millisecond range, a site twice.
fn check_shape(path: &Path, sites: &[SiteTelemetry]) -> Result<(), DatasetError> {
    for (i, site) in sites.iter().enumerate() {
        if sites[..i].iter().any(|s| s.site_id == site.site_id) {
            return Err(write_error(
                path,
                format!("site `{}` given twice", site.site_id),
            ));
        }
        for (name, column) in site.columns() {
            if let Some(values) = column.filter(|v| v.len() != site.len()) {
                return Err(write_error(
                    path,
                    format!(
                        "site `{}`: `{name}` has {} values for {} timestamps",
                        site.site_id,
                        values.len(),
                        site.len()
                    ),
                ));
            }
        }
        if let Some(k) = site.timestamps.windows(2).position(|w| w[1] <= w[0]) {
            return Err(write_error(
                path,
                format!(
                    "site `{}`: timestamps not strictly increasing at index {}",
                    site.site_id,
                    k + 1
                ),
            ));
        }
        if site
            .timestamps
            .iter()
            .any(|t| t.checked_mul(1000).is_none())
        {
            return Err(write_error(
                path,
                format!("site `{}`: timestamp out of range", site.site_id),
            ));
        }
    }
    Ok(())
}

/// The file schema: timestamp, site_id, then the value columns at least one site has.
fn file_schema(sites: &[SiteTelemetry]) -> (Arc<Schema>, Vec<&'static str>) {
    let present: Vec<&'static str> = VALUE_COLUMNS
        .into_iter()
        .filter(|name| {
            sites
                .iter()
                .any(|s| s.columns().iter().any(|(n, c)| n == name && c.is_some()))
        })
        .collect();
    let mut fields = vec![
        Field::new(
            col::TIMESTAMP,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(col::SITE_ID, DataType::Utf8, false),
    ];
    fields.extend(
        present
            .iter()
            .map(|name| Field::new(*name, DataType::Float64, true)),
    );
    (Arc::new(Schema::new(fields)), present)
}

/// One record batch of rows `range` of `site`.
fn site_batch(
    schema: &Arc<Schema>,
    present: &[&'static str],
    site: &SiteTelemetry,
    range: std::ops::Range<usize>,
) -> Result<RecordBatch, String> {
    let len = range.len();
    let timestamps: Vec<i64> = site.timestamps[range.clone()]
        .iter()
        .map(|t| t * 1000)
        .collect();
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(timestamps).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            &site.site_id,
            len,
        ))),
    ];
    let columns = site.columns();
    for name in present {
        let values = columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, c)| *c);
        arrays.push(Arc::new(match values {
            Some(values) => Float64Array::from(values[range.clone()].to_vec()),
            None => Float64Array::new_null(len),
        }));
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
}

/// A fresh temporary name beside `path`, hidden so fleet readers skip it.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{unique}.tmp", std::process::id()))
}

/// Writes the telemetry of one or several sites to `path` (long format, sites one after the
/// other): timestamps as UTC milliseconds, snappy compression, row groups of at most 65,536
/// rows. The file appears whole or not at all: it is written beside `path` and renamed.
pub fn write_telemetry(path: &Path, sites: &[SiteTelemetry]) -> Result<(), DatasetError> {
    check_shape(path, sites)?;
    let (schema, present) = file_schema(sites);
    if !present.iter().any(|name| TARGET_COLUMNS.contains(name)) {
        return Err(write_error(
            path,
            "no site has `load_kw`, `pv_kw` or `net_load_kw`: the file would have no target",
        ));
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let temp = temp_path(path);
    let written = (|| -> Result<(), DatasetError> {
        let file = File::create(&temp).map_err(|e| DatasetError::io(&temp, e))?;
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| write_error(path, e))?;
        for site in sites {
            for start in (0..site.len()).step_by(BATCH_ROWS) {
                let end = (start + BATCH_ROWS).min(site.len());
                let batch = site_batch(&schema, &present, site, start..end)
                    .map_err(|e| write_error(path, e))?;
                writer.write(&batch).map_err(|e| write_error(path, e))?;
            }
        }
        let file = writer.into_inner().map_err(|e| write_error(path, e))?;
        file.sync_all().map_err(|e| DatasetError::io(&temp, e))
    })();
    let renamed =
        written.and_then(|()| std::fs::rename(&temp, path).map_err(|e| DatasetError::io(path, e)));
    if renamed.is_err() {
        // Best effort: the temporary file is garbage whatever else went wrong.
        let _ = std::fs::remove_file(&temp);
    }
    renamed
}

/// A site id that can name a file in the fleet directory the reader will see.
fn file_name_for(dir: &Path, site_id: &str) -> Result<PathBuf, DatasetError> {
    let bad = site_id.is_empty()
        || site_id.starts_with('.')
        || site_id.contains(['/', '\\', '\0'])
        || site_id.chars().any(char::is_control);
    if bad {
        return Err(write_error(
            dir,
            format!("site id `{site_id}` cannot name a file"),
        ));
    }
    Ok(dir.join(format!("{site_id}.parquet")))
}

/// Writes a fleet directory the way [`crate::reader::read_fleet_dir`] reads it: one
/// `<site_id>.parquet` per site plus `sites.json`; creates `dir` if needed. Every site needs
/// both metadata and telemetry. Other `*.parquet` files already in `dir` are left alone (and
/// would be read back too).
pub fn write_fleet_dir(
    dir: &Path,
    sites: &[SiteMetadata],
    telemetry: &[SiteTelemetry],
) -> Result<(), DatasetError> {
    for (i, site) in telemetry.iter().enumerate() {
        if telemetry[..i].iter().any(|t| t.site_id == site.site_id) {
            return Err(write_error(
                dir,
                format!("site `{}` has telemetry twice", site.site_id),
            ));
        }
        if !sites.iter().any(|m| m.site_id == site.site_id) {
            return Err(write_error(
                dir,
                format!("site `{}` has telemetry but no metadata", site.site_id),
            ));
        }
    }
    for meta in sites {
        if !telemetry.iter().any(|t| t.site_id == meta.site_id) {
            return Err(write_error(
                dir,
                format!("site `{}` has metadata but no telemetry", meta.site_id),
            ));
        }
    }
    let files = telemetry
        .iter()
        .map(|site| file_name_for(dir, &site.site_id))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
    for (site, file) in telemetry.iter().zip(&files) {
        write_telemetry(file, std::slice::from_ref(site))?;
    }
    write_metadata(&dir.join(METADATA_FILE), sites)
}
