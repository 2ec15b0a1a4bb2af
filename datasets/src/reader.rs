//! Reading and validating Parquet telemetry.
//!
//! The accepted schema (long format, one row per site and time step):
//!
//! | column | type |
//! |---|---|
//! | `timestamp` | Timestamp, any unit, with a time zone (Arrow stores such values as UTC instants whatever the zone's name; `UTC` is what [`crate::writer`] writes). Tz-naive timestamps are refused: they are too often local wall-clock time. Whole seconds only. |
//! | `site_id` | Utf8, LargeUtf8, Utf8View or a dictionary of these |
//! | `load_kw`, `pv_kw` | Float64 (Float32 is widened), nullable; at least one of them |
//! | `temperature_c`, `ghi_w_m2`, `cloud_cover` and their `_forecast` twins | Float64 (or Float32), nullable |
//!
//! Any other column is an error (with a "did you mean" hint), so a typo never drops a column
//! silently. A file may hold several sites, each site's rows in strictly increasing time
//! order; rows of different sites may interleave. Missing time steps are gaps and stay
//! missing. `load_kw` is consumption (demand before PV) and cannot be negative.
//!
//! Every error names the file, the column and the 0-based data row within the file.

mod arrays;
pub(crate) mod checks;
pub use checks::weather_value_problem;
pub(crate) mod hint;
mod layout;
mod sites;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::metadata::{METADATA_FILE, read_metadata};
use crate::{DatasetError, Resolution, SiteMetadata, SiteTelemetry};
use arrays::BatchColumns;
use layout::FileLayout;
use sites::FileSites;

/// Rows decoded at a time; memory stays bounded by one batch plus the telemetry kept.
const BATCH_ROWS: usize = 8192;

/// One site's telemetry after validation, with the resolution detected from its timestamps.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedSite {
    pub telemetry: SiteTelemetry,
    pub resolution: Resolution,
}

/// A fleet directory: its metadata and each site's telemetry, in metadata order.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetData {
    pub sites: Vec<SiteMetadata>,
    pub telemetry: Vec<ValidatedSite>,
}

fn not_parquet(path: &Path, reason: String) -> DatasetError {
    DatasetError::NotParquet {
        path: path.to_path_buf(),
        reason,
    }
}

/// How long decoding one telemetry file may take before it is given up: the `parquet` crate
/// can spin forever on some corrupt files (found by fuzzing: a page header whose thrift skip
/// never advances; input in fuzz/known-hangs/). Real files decode far inside this (a year of
/// 5-minute data for one site in well under a second on 2 cores).
pub fn decode_time_limit(file_bytes: u64) -> std::time::Duration {
    std::time::Duration::from_secs(60 + file_bytes / 100_000)
}

/// Reads and validates one Parquet telemetry file against the fleet's metadata.
///
/// Returns the sites in order of their first row in the file. A column a site never fills
/// (the PV rows of a building in a multi-site file) is `None` for that site. Every site in
/// the file needs an entry in `sites`; entries without rows in this file are ignored.
/// Decoding is bounded by [`decode_time_limit`].
pub fn read_telemetry(
    path: &Path,
    sites: &[SiteMetadata],
) -> Result<Vec<ValidatedSite>, DatasetError> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| DatasetError::io(path, e))?
        .len();
    read_telemetry_within(path, sites, decode_time_limit(bytes))
}

/// [`read_telemetry`] with an explicit time limit. The decoder runs on its own thread; when
/// it overruns, the file is reported corrupt and that thread is abandoned (it cannot be
/// stopped from outside; it ends with the process, which a command or daemon given a corrupt
/// file does after reporting it).
pub fn read_telemetry_within(
    path: &Path,
    sites: &[SiteMetadata],
    limit: std::time::Duration,
) -> Result<Vec<ValidatedSite>, DatasetError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (owned_path, owned_sites) = (path.to_path_buf(), sites.to_vec());
    std::thread::Builder::new()
        .name("parquet-decode".into())
        .spawn(move || {
            let _ = tx.send(decode_catching_panics(&owned_path, &owned_sites));
        })
        .map_err(|e| DatasetError::io(path, e))?;
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(_) => Err(not_parquet(
            path,
            format!(
                "corrupt data: the Parquet decoder made no progress for {} s (a known decoder \
                 defect on some corrupt files); replace the file",
                limit.as_secs_f64()
            ),
        )),
    }
}

fn decode_catching_panics(
    path: &Path,
    sites: &[SiteMetadata],
) -> Result<Vec<ValidatedSite>, DatasetError> {
    // The Parquet decoder (the `parquet` crate) can panic on some corrupt files instead of
    // returning an error (found by fuzzing: definition levels past the page's end). A corrupt
    // file from one site must be an error naming it, never a crash of the daemon or command.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_telemetry(path, sites)
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(not_parquet(
            path,
            format!("corrupt data: the Parquet decoder failed ({why})"),
        ))
    })
}

fn decode_telemetry(
    path: &Path,
    sites: &[SiteMetadata],
) -> Result<Vec<ValidatedSite>, DatasetError> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| not_parquet(path, e.to_string()))?;
    let layout = FileLayout::from_schema(path, builder.schema())?;
    let batches = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| not_parquet(path, e.to_string()))?;
    let mut file_sites = FileSites::new(path, &layout, sites);
    let mut first_row = 0;
    for batch in batches {
        let batch = batch.map_err(|e| {
            not_parquet(
                path,
                format!("corrupt data at or after row {first_row}: {e}"),
            )
        })?;
        let columns = BatchColumns::new(path, &layout, &batch)?;
        file_sites.push(&columns, batch.num_rows(), first_row)?;
        first_row += batch.num_rows();
    }
    file_sites.finish()
}

/// The `*.parquet` files of `dir`, sorted by name. Hidden files (`.x.parquet`, such as
/// macOS `._` resource forks or an unfinished write) are skipped.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))? {
        let path = entry.map_err(|e| DatasetError::io(dir, e))?.path();
        let visible = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'));
        let parquet = path.extension().is_some_and(|e| e == "parquet");
        if visible && parquet && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a fleet directory: `sites.json` and every `*.parquet` file in it (by name).
///
/// Each site must appear in exactly one file, and every site in `sites.json` must have
/// telemetry: a metadata entry without data is an error, not skipped, because a fleet that
/// silently shrinks would skew every federation built on it.
pub fn read_fleet_dir(dir: &Path) -> Result<FleetData, DatasetError> {
    let metadata_path = dir.join(METADATA_FILE);
    let sites = read_metadata(&metadata_path)?;
    let mut found: HashMap<String, (PathBuf, ValidatedSite)> = HashMap::new();
    for file in parquet_files(dir)? {
        for site in read_telemetry(&file, &sites)? {
            if let Some((first, _)) = found.get(&site.telemetry.site_id) {
                return Err(DatasetError::DuplicateSite {
                    path: file.clone(),
                    site: site.telemetry.site_id.clone(),
                    first: first.clone(),
                });
            }
            found.insert(site.telemetry.site_id.clone(), (file.clone(), site));
        }
    }
    let telemetry = sites
        .iter()
        .map(|meta| {
            found
                .remove(&meta.site_id)
                .map(|(_, site)| site)
                .ok_or_else(|| DatasetError::Metadata {
                    path: metadata_path.clone(),
                    reason: format!(
                        "site `{}` has no telemetry: no *.parquet file in {} holds it",
                        meta.site_id,
                        dir.display()
                    ),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(FleetData { sites, telemetry })
}
