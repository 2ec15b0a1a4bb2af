//! Importing an operator's CSV export (one timestamp and one value column) into the schema.
//!
//! Cells are trimmed; an empty value cell is a missing value, anything else must be a
//! number (`;`- or tab-separated files may use a decimal comma). The delimiter is guessed
//! from the header line. Rows must be in strictly increasing time order and keep to one
//! supported resolution, as in [`crate::reader`]. Errors name the file, the 0-based data
//! row (with the 1-based line in the file) and the column; unordered timestamps are
//! [`DatasetError::Csv`] errors naming the CSV's timestamp column.

mod merge;
mod parse;

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::Path;

pub use merge::merge_columns;

use crate::reader::checks::{SiteTimes, check_value, rfc3339, value_error};
use crate::reader::hint::{closest, found_instead};
use crate::schema::{TARGET_COLUMNS, VALUE_COLUMNS};
use crate::{DatasetError, SiteTelemetry};

/// The unit of a power column in the CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerUnit {
    W,
    Kw,
    /// Energy per interval (meter exports of consumption per 15 min or per hour).
    Wh,
    Kwh,
}

impl PowerUnit {
    /// Kilowatts (for power) or kilowatt-hours (for energy) per unit.
    pub fn to_kw(self) -> f64 {
        match self {
            PowerUnit::W | PowerUnit::Wh => 1e-3,
            PowerUnit::Kw | PowerUnit::Kwh => 1.0,
        }
    }

    /// Whether values are energy per interval, to be divided by the interval's length.
    pub fn is_energy(self) -> bool {
        matches!(self, PowerUnit::Wh | PowerUnit::Kwh)
    }
}

impl std::fmt::Display for PowerUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerUnit::W => "W",
            PowerUnit::Kw => "kW",
            PowerUnit::Wh => "Wh",
            PowerUnit::Kwh => "kWh",
        })
    }
}

impl std::str::FromStr for PowerUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "W" | "w" => Ok(PowerUnit::W),
            "kW" | "kw" | "KW" => Ok(PowerUnit::Kw),
            "Wh" | "wh" => Ok(PowerUnit::Wh),
            "kWh" | "kwh" | "KWH" => Ok(PowerUnit::Kwh),
            other => Err(format!(
                "unknown unit `{other}` (power: W or kW; energy per interval: Wh or kWh)"
            )),
        }
    }
}

/// What to take from a CSV file and where to put it.
#[derive(Clone, Debug)]
pub struct CsvImport {
    pub site_id: String,
    pub timestamp_column: String,
    pub value_column: String,
    /// The schema value column the values become, e.g. `load_kw`.
    pub target_column: String,
    /// Unit of the values; only power columns (`load_kw`, `pv_kw`, `net_load_kw`) may be in W.
    pub unit: PowerUnit,
    /// Time zone of naive local timestamps; timestamps with an offset are used as is. `None`
    /// refuses naive timestamps (naming the row) rather than guessing UTC.
    pub source_timezone: Option<chrono_tz::Tz>,
    /// chrono format of the timestamps; `None` accepts RFC3339 or `%Y-%m-%d %H:%M:%S`
    /// (also with `T`, or without seconds).
    pub timestamp_format: Option<String>,
    /// Timestamps label the end of each interval (common in meter exports of energy): they are
    /// moved back one step, since the schema labels an interval by its start.
    pub interval_end: bool,
}

impl CsvImport {
    fn check(&self, path: &Path) -> Result<&'static str, DatasetError> {
        let spec_error = |reason: String| DatasetError::ImportSpec {
            path: path.to_path_buf(),
            reason,
        };
        if self.site_id.is_empty() {
            return Err(spec_error("empty site id".into()));
        }
        let Some(target) = VALUE_COLUMNS.into_iter().find(|c| *c == self.target_column) else {
            let hint = closest(&self.target_column, VALUE_COLUMNS)
                .map(|meant| format!(" (not a schema column; did you mean `{meant}`?)"))
                .unwrap_or_else(|| {
                    format!(
                        " (not a schema column; use one of {})",
                        VALUE_COLUMNS.join(", ")
                    )
                });
            return Err(DatasetError::UnknownColumn {
                path: path.to_path_buf(),
                column: self.target_column.clone(),
                hint,
            });
        };
        if self.unit != PowerUnit::Kw && !TARGET_COLUMNS.contains(&target) {
            return Err(spec_error(format!(
                "unit {} applies to power columns only, not `{target}`",
                self.unit
            )));
        }
        Ok(target)
    }
}

/// Position of `wanted` among the CSV headers, or the error naming what was found instead.
fn header_index(path: &Path, headers: &[String], wanted: &str) -> Result<usize, DatasetError> {
    headers
        .iter()
        .position(|h| h == wanted)
        .ok_or_else(|| DatasetError::MissingColumn {
            path: path.to_path_buf(),
            column: wanted.to_string(),
            hint: match closest(wanted, headers.iter().map(String::as_str)) {
                Some(found) => found_instead(wanted, found),
                None => format!(" (the header has: {})", headers.join(", ")),
            },
        })
}

/// Imports one value column of a CSV file as the telemetry of `spec.site_id`.
pub fn import_csv(path: &Path, spec: &CsvImport) -> Result<SiteTelemetry, DatasetError> {
    let target = spec.check(path)?;
    let mut file = BufReader::new(File::open(path).map_err(|e| DatasetError::io(path, e))?);
    let mut header_line = Vec::new();
    file.read_until(b'\n', &mut header_line)
        .map_err(|e| DatasetError::io(path, e))?;
    file.rewind().map_err(|e| DatasetError::io(path, e))?;
    let delimiter = parse::sniff_delimiter(&header_line);
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(file);
    let csv_error = |row: usize, e: csv::Error| DatasetError::Csv {
        path: path.to_path_buf(),
        row,
        reason: e.to_string(),
    };
    let headers: Vec<String> = csv
        .byte_headers()
        .map_err(|e| csv_error(0, e))?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    let time_at = header_index(path, &headers, &spec.timestamp_column)?;
    let value_at = header_index(path, &headers, &spec.value_column)?;
    let format = spec.timestamp_format.as_deref();
    let per_unit = if TARGET_COLUMNS.contains(&target) {
        spec.unit.to_kw()
    } else {
        1.0
    };

    let mut telemetry = SiteTelemetry::new(spec.site_id.clone());
    let mut values: Vec<Option<f64>> = Vec::new();
    for (row, record) in csv.byte_records().enumerate() {
        let record = record.map_err(|e| csv_error(row, e))?;
        let line = record.position().map_or(row + 2, |p| p.line() as usize);
        let cell_error = |column: &str, reason: String| DatasetError::Csv {
            path: path.to_path_buf(),
            row,
            reason: format!("column `{column}` (line {line}): {reason}"),
        };
        let cell = |at: usize, column: &str| {
            record
                .get(at)
                .map(String::from_utf8_lossy)
                .ok_or_else(|| cell_error(column, "row has too few fields".into()))
        };
        let text = cell(time_at, &spec.timestamp_column)?;
        if text.is_empty() {
            return Err(DatasetError::NullValue {
                path: path.to_path_buf(),
                column: spec.timestamp_column.clone(),
                row,
            });
        }
        let unix_s = parse::parse_timestamp(
            &text,
            format,
            spec.source_timezone,
            telemetry.timestamps.last().copied(),
        )
        .map_err(|why| cell_error(&spec.timestamp_column, format!("timestamp `{text}` {why}")))?;
        // The CSV's timestamp column has the operator's name, so ordering errors are CSV
        // errors naming it (the Parquet variants always mean the `timestamp` column).
        if let Some(&previous) = telemetry.timestamps.last() {
            if unix_s == previous {
                let reason = format!("duplicate timestamp {}", rfc3339(unix_s));
                return Err(cell_error(&spec.timestamp_column, reason));
            }
            if unix_s < previous {
                let reason = format!(
                    "timestamp {} is earlier than the previous row's {}",
                    rfc3339(unix_s),
                    rfc3339(previous)
                );
                return Err(cell_error(&spec.timestamp_column, reason));
            }
        }
        let text = cell(value_at, &spec.value_column)?;
        let value = if text.is_empty() {
            None
        } else {
            let raw = parse::parse_number(&text, delimiter != b',').ok_or_else(|| {
                cell_error(&spec.value_column, format!("`{text}` is not a number"))
            })?;
            Some(raw * per_unit)
        };
        telemetry.timestamps.push(unix_s);
        values.push(value);
    }
    let rows: Vec<usize> = (0..telemetry.len()).collect();
    let resolution = SiteTimes {
        path,
        site: &spec.site_id,
        column: &spec.timestamp_column,
        timestamps: &telemetry.timestamps,
        rows: &rows,
    }
    .resolution()?;
    let step = resolution.seconds();
    if spec.interval_end {
        telemetry.timestamps.iter_mut().for_each(|t| *t -= step);
    }
    // Energy per interval becomes the interval's mean power; then every value is checked as
    // the schema column it fills, naming its row.
    let hours = if TARGET_COLUMNS.contains(&target) && spec.unit.is_energy() {
        step as f64 / 3600.0
    } else {
        1.0
    };
    for (row, value) in values.iter_mut().enumerate() {
        if let Some(v) = value {
            *v /= hours;
            check_value(target, *v, None)
                .map_err(|p| value_error(path, &spec.value_column, row, *v, p))?;
        }
    }
    if let Some(slot) = telemetry.column_mut(target) {
        *slot = Some(values);
    }
    Ok(telemetry)
}
