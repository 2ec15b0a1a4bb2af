//! Local-time CSV exports, as meter portals and inverter loggers give them: naive wall-clock
//! timestamps in the site's time zone (the hour clocks go back appears twice, the hour they
//! jump over not at all) and power in W. The inverse of `gridfed datasets import --timezone
//! ZONE --unit W`; the realistic synthetic fleet ships them so that path is exercised on data
//! with both DST switches.

use std::io::Write;
use std::path::Path;

use crate::calendar::local_datetime;
use crate::schema::TARGET_COLUMNS;
use crate::{DatasetError, SiteTelemetry};

/// Header of an export column: the schema's target column with its unit in W
/// (`load_kw` -> `load_w`).
pub fn export_column(schema_column: &str) -> String {
    format!("{}_w", schema_column.trim_end_matches("_kw"))
}

/// Writes the target columns of `telemetry` to `path` as a local-time CSV in `tz`: a
/// `timestamp` column (`%Y-%m-%d %H:%M:%S`, wall time), then one `<target>_w` column per target
/// the site measures, empty where a value is missing.
pub fn write_local_csv(
    path: &Path,
    telemetry: &SiteTelemetry,
    tz: chrono_tz::Tz,
) -> Result<(), DatasetError> {
    let write_error = |e: std::io::Error| DatasetError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let columns: Vec<(&str, &Vec<Option<f64>>)> = telemetry
        .columns()
        .into_iter()
        .filter(|(name, _)| TARGET_COLUMNS.contains(name))
        .filter_map(|(name, values)| values.map(|v| (name, v)))
        .collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(write_error)?);
    let header: Vec<String> = std::iter::once("timestamp".to_string())
        .chain(columns.iter().map(|(name, _)| export_column(name)))
        .collect();
    writeln!(out, "{}", header.join(",")).map_err(write_error)?;
    for (i, &ts) in telemetry.timestamps.iter().enumerate() {
        let mut line = local_datetime(tz, ts)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        for (_, values) in &columns {
            line.push(',');
            if let Some(kw) = values[i] {
                // Shortest round-trip text of the W value: the import divides by 1000 again.
                line.push_str(&format!("{}", kw * 1000.0));
            }
        }
        writeln!(out, "{line}").map_err(write_error)?;
    }
    out.flush().map_err(write_error)
}
