//! Row-level checks shared by the Parquet reader and the CSV import: plausible values and
//! the time grid of a site.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, SecondsFormat};

use crate::metadata::{SiteKind, SiteMetadata};
use crate::schema::{
    CLOUD_COVER_RANGE, GHI_RANGE_W_M2, NET_LOAD_LIMIT_TOLERANCE, PV_NEGATIVE_TOLERANCE_KW,
    PV_OVER_CAPACITY_FACTOR, TEMPERATURE_RANGE_C, col,
};
use crate::{DatasetError, Resolution};

/// Unix seconds as RFC3339 UTC (`2024-01-01T00:00:00Z`); raw seconds if out of chrono's range.
pub(crate) fn rfc3339(unix_s: i64) -> String {
    DateTime::from_timestamp(unix_s, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{unix_s} s since 1970"))
}

/// What is wrong with one value.
pub(crate) enum ValueProblem {
    NonFinite,
    Impossible(String),
}

fn kind_name(kind: SiteKind) -> &'static str {
    match kind {
        SiteKind::Building => "building",
        SiteKind::Prosumer => "prosumer",
        SiteKind::PvPlant => "pv_plant",
    }
}

fn outside(value: f64, (low, high): (f64, f64), unit: &str) -> Result<(), ValueProblem> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(ValueProblem::Impossible(format!(
            "outside the plausible range [{low}, {high}] {unit}"
        )))
    }
}

/// Checks one value of schema column `column`. With `site` the checks that need metadata run
/// too (PV capacity, which kinds of site meter load or PV); the CSV import has none.
pub(crate) fn check_value(
    column: &str,
    value: f64,
    site: Option<&SiteMetadata>,
) -> Result<(), ValueProblem> {
    if !value.is_finite() {
        return Err(ValueProblem::NonFinite);
    }
    match column {
        col::LOAD_KW => {
            if let Some(site) = site.filter(|s| !s.kind.has_load()) {
                return Err(ValueProblem::Impossible(format!(
                    "site `{}` is a {} and meters no load",
                    site.site_id,
                    kind_name(site.kind)
                )));
            }
            // load_kw is consumption before PV, so it cannot run backwards; export belongs in pv_kw.
            if value < 0.0 {
                return Err(ValueProblem::Impossible(
                    "negative load (load_kw is consumption before PV; generation goes in pv_kw)"
                        .into(),
                ));
            }
            Ok(())
        }
        col::NET_LOAD_KW => {
            let Some(site) = site else {
                return Ok(());
            };
            if !site.kind.has_load() {
                return Err(ValueProblem::Impossible(format!(
                    "site `{}` is a {} and has no consumption to net",
                    site.site_id,
                    kind_name(site.kind)
                )));
            }
            if let Some(limit) = site.import_limit_kw
                && value > limit * NET_LOAD_LIMIT_TOLERANCE
            {
                return Err(ValueProblem::Impossible(format!(
                    "net import above {NET_LOAD_LIMIT_TOLERANCE} x import_limit_kw {limit} kW"
                )));
            }
            if let Some(limit) = site.export_limit_kw
                && -value > limit * NET_LOAD_LIMIT_TOLERANCE
            {
                return Err(ValueProblem::Impossible(format!(
                    "net export above {NET_LOAD_LIMIT_TOLERANCE} x export_limit_kw {limit} kW"
                )));
            }
            Ok(())
        }
        col::PV_KW => {
            if let Some(site) = site {
                if !site.kind.has_pv() {
                    return Err(ValueProblem::Impossible(format!(
                        "site `{}` is a {} without PV",
                        site.site_id,
                        kind_name(site.kind)
                    )));
                }
                let limit = site.capacity_kw * PV_OVER_CAPACITY_FACTOR;
                if value > limit {
                    return Err(ValueProblem::Impossible(format!(
                        "PV above {PV_OVER_CAPACITY_FACTOR} x capacity {} kW = {limit} kW",
                        site.capacity_kw
                    )));
                }
            }
            if value < -PV_NEGATIVE_TOLERANCE_KW {
                return Err(ValueProblem::Impossible(format!(
                    "PV below -{PV_NEGATIVE_TOLERANCE_KW} kW (more than inverter standby draw)"
                )));
            }
            Ok(())
        }
        col::TEMPERATURE_C | col::TEMPERATURE_FORECAST_C => {
            outside(value, TEMPERATURE_RANGE_C, "degC")
        }
        col::GHI_W_M2 | col::GHI_FORECAST_W_M2 => outside(value, GHI_RANGE_W_M2, "W/m2"),
        col::CLOUD_COVER | col::CLOUD_COVER_FORECAST => outside(value, CLOUD_COVER_RANGE, "")
            .map_err(|_| {
                let percent = (1.0..=100.0).contains(&value);
                ValueProblem::Impossible(format!(
                    "cloud cover outside [0, 1]{}",
                    if percent {
                        " (a fraction: divide percent by 100)"
                    } else {
                        ""
                    }
                ))
            }),
        _ => Ok(()),
    }
}

/// Why `value` cannot be a reading of weather column `column` (`temperature_forecast_c` in
/// degC, `ghi_forecast_w_m2` in W/m2, `cloud_cover_forecast` as a fraction, and their
/// observed twins): the same plausibility rules as the Parquet reader, for values that arrive
/// another way (forecast requests). `None` when plausible or not a weather column.
pub fn weather_value_problem(column: &str, value: f64) -> Option<String> {
    match check_value(column, value, None) {
        Ok(()) => None,
        Err(ValueProblem::NonFinite) => Some("not a finite number".into()),
        Err(ValueProblem::Impossible(reason)) => Some(reason),
    }
}

/// Turns a [`ValueProblem`] into the error naming file, column and row.
pub(crate) fn value_error(
    path: &Path,
    column: &str,
    row: usize,
    value: f64,
    problem: ValueProblem,
) -> DatasetError {
    match problem {
        ValueProblem::NonFinite => DatasetError::NonFinite {
            path: path.to_path_buf(),
            column: column.to_string(),
            row,
            value,
        },
        ValueProblem::Impossible(reason) => DatasetError::Impossible {
            path: path.to_path_buf(),
            column: column.to_string(),
            row,
            value,
            reason,
        },
    }
}

/// A step length in words (`7 min`, `2 h`, `90 s`).
fn describe_step(seconds: i64) -> String {
    if seconds % 3600 == 0 {
        format!("{} h", seconds / 3600)
    } else if seconds % 60 == 0 {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

/// One site's timestamps as read: strictly increasing Unix seconds and, for each, its
/// 0-based data row in the file (rows of several sites may interleave).
pub(crate) struct SiteTimes<'a> {
    pub path: &'a Path,
    pub site: &'a str,
    pub column: &'a str,
    pub timestamps: &'a [i64],
    pub rows: &'a [usize],
}

impl SiteTimes<'_> {
    fn error(&self, row_index: usize, reason: String) -> DatasetError {
        let row = self.rows.get(row_index).copied().unwrap_or(row_index);
        DatasetError::Resolution {
            path: self.path.to_path_buf(),
            site: self.site.to_string(),
            reason: format!("column `{}` row {row}: {reason}", self.column),
        }
    }

    /// Detects the base step (the most common positive difference; on a tie the shorter) and
    /// checks the site keeps to it: it must be a supported [`Resolution`], every step a
    /// multiple of it (longer steps are gaps and stay missing), and the timestamps on the UTC
    /// grid of that step (hourly data at :30 is refused, not shifted).
    pub(crate) fn resolution(&self) -> Result<Resolution, DatasetError> {
        let ts = self.timestamps;
        if ts.len() < 2 {
            return Err(self.error(
                0,
                "only one timestamp: need at least two to detect the resolution".into(),
            ));
        }
        // step -> (how often, index of its first occurrence)
        let mut steps: HashMap<i64, (usize, usize)> = HashMap::new();
        for (i, pair) in ts.windows(2).enumerate() {
            let entry = steps
                .entry(pair[1].saturating_sub(pair[0]))
                .or_insert((0, i + 1));
            entry.0 += 1;
        }
        let (&base, &(_, first_at)) = steps
            .iter()
            .max_by(|(step_a, (count_a, _)), (step_b, (count_b, _))| {
                count_a.cmp(count_b).then(step_b.cmp(step_a))
            })
            .ok_or_else(|| self.error(0, "no steps between timestamps".into()))?;
        let Some(resolution) = Resolution::from_seconds(base) else {
            return Err(self.error(
                first_at,
                format!(
                    "unknown resolution: the most common step is {} ({base} s); supported: 15min, 30min, 1h",
                    describe_step(base)
                ),
            ));
        };
        for (i, pair) in ts.windows(2).enumerate() {
            let step = pair[1].saturating_sub(pair[0]);
            if step % base != 0 {
                return Err(self.error(
                    i + 1,
                    format!(
                        "mixed resolution: a step of {} from the previous row is not a multiple of the base step {resolution}",
                        describe_step(step)
                    ),
                ));
            }
        }
        // Every step is a multiple of the base, so the first timestamp decides for all.
        if ts[0].rem_euclid(base) != 0 {
            return Err(self.error(
                0,
                format!(
                    "timestamp {} is off the {resolution} grid (steps start at whole multiples of {resolution} in UTC)",
                    rfc3339(ts[0])
                ),
            ));
        }
        Ok(resolution)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolution_of(timestamps: &[i64]) -> Result<Resolution, DatasetError> {
        let rows: Vec<usize> = (0..timestamps.len()).map(|i| i * 2).collect();
        SiteTimes {
            path: Path::new("f.parquet"),
            site: "s",
            column: "timestamp",
            timestamps,
            rows: &rows,
        }
        .resolution()
    }

    #[test]
    fn base_step_tolerates_gaps() {
        assert_eq!(
            resolution_of(&[0, 900, 1800, 4500, 5400]).ok(),
            Some(Resolution::Min15)
        );
        assert_eq!(
            resolution_of(&[3600, 7200, 18000]).ok(),
            Some(Resolution::Hour)
        );
        // A tie goes to the shorter step; the longer one is a gap.
        assert_eq!(
            resolution_of(&[0, 1800, 5400]).ok(),
            Some(Resolution::Min30)
        );
    }

    #[test]
    fn unknown_mixed_and_off_grid_name_the_row() {
        let err = resolution_of(&[0, 420, 840, 1260]).unwrap_err().to_string();
        assert!(
            err.contains("unknown resolution") && err.contains("7 min") && err.contains("row 2"),
            "{err}"
        );
        let err = resolution_of(&[0, 900, 1800, 2700, 3900])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mixed resolution") && err.contains("row 8"),
            "{err}"
        );
        let err = resolution_of(&[300, 3900, 7500]).unwrap_err().to_string();
        assert!(
            err.contains("off the 1h grid") && err.contains("row 0"),
            "{err}"
        );
        let err = resolution_of(&[0]).unwrap_err().to_string();
        assert!(err.contains("at least two"), "{err}");
    }

    #[test]
    fn cloud_cover_in_percent_gets_a_hint() {
        match check_value(col::CLOUD_COVER, 55.0, None) {
            Err(ValueProblem::Impossible(reason)) => {
                assert!(reason.contains("percent"), "{reason}")
            }
            _ => panic!("55 accepted as a cloud-cover fraction"),
        }
        assert!(check_value(col::CLOUD_COVER, 0.55, None).is_ok());
        assert!(matches!(
            check_value(col::GHI_W_M2, f64::NAN, None),
            Err(ValueProblem::NonFinite)
        ));
    }
}
