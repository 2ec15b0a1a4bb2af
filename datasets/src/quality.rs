//! A per-site data quality report: span, coverage and gaps on the site's time grid.

use std::fmt;

use serde::Serialize;

use crate::night::grid_site;
use crate::prepare::{SplitSpec, prepare_site, unusable_reason};
use crate::reader::checks::rfc3339;
use crate::schema::TARGET_COLUMNS;
use crate::{Resolution, SiteMetadata, SiteTelemetry, Target};

/// How many of the largest gaps a report lists.
const LARGEST_GAPS: usize = 5;

/// A run of grid steps without any target value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    /// First missing step (RFC3339, UTC).
    pub start: String,
    /// Last missing step, inclusive.
    pub end: String,
    pub steps: usize,
}

/// Coverage of one value column.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ColumnCoverage {
    pub column: String,
    /// Fraction of the grid steps between first and last that have a value, in [0, 1].
    pub fraction: f64,
}

/// Data quality of one site on its grid from its first to its last timestamp.
///
/// A step counts as observed when any target column (`load_kw`, `pv_kw`) has a value there;
/// gaps are maximal runs of steps that are not observed (no row, or a row without targets).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityReport {
    pub site_id: String,
    pub resolution: Resolution,
    /// First and last timestamp (RFC3339, UTC); empty for a site without rows.
    pub first: String,
    pub last: String,
    /// Days covered by the grid: `expected_steps` steps of `resolution`.
    pub span_days: f64,
    /// Grid steps from first to last timestamp, both included.
    pub expected_steps: usize,
    /// Grid steps with a row.
    pub present_steps: usize,
    /// Per value column present, in schema order.
    pub coverage: Vec<ColumnCoverage>,
    pub gap_count: usize,
    pub longest_gap_steps: usize,
    /// The largest gaps, longest first (earliest first among equals), at most five.
    pub largest_gaps: Vec<Gap>,
    /// Missing PV steps with the sun below the horizon, filled with 0 kW when the site is put
    /// on its grid (see `datasets::night`); set by [`site_quality_report`].
    pub pv_night_zero_steps: usize,
    /// What will keep the site out of training or scoring (e.g. no complete day-ahead
    /// window), found up front; set by [`site_quality_report`].
    pub warnings: Vec<String>,
}

/// [`quality_report`] plus what only the site's metadata tells: how many night PV gaps will be
/// filled with zeros, and, for each target the site measures, whether the default day-ahead
/// split (hourly, one week of context, one day ahead, last 20% of days held out) leaves it
/// complete training and test windows. A site that fails that is skipped by `gridfed train`
/// and the federation, so the operator hears it here first.
pub fn site_quality_report(
    site: &SiteTelemetry,
    resolution: Resolution,
    meta: &SiteMetadata,
) -> QualityReport {
    let mut report = quality_report(site, resolution);
    // Hourly is the coarsest supported grid, so every native resolution can be put on it.
    let coarse = Resolution::Hour;
    let gridded = match grid_site(site, resolution, coarse, meta) {
        Ok(gridded) => gridded,
        Err(e) => {
            report.warnings.push(format!("cannot be gridded: {e}"));
            return report;
        }
    };
    report.pv_night_zero_steps = gridded.pv_night_zeros;
    let split = SplitSpec::day_ahead(coarse.steps_per_day());
    for target in Target::ALL {
        let reason = match prepare_site(&gridded.series, meta, target, split) {
            Ok(None) => continue,
            Ok(Some(prepared)) => unusable_reason(&prepared, split),
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = reason {
            report.warnings.push(format!(
                "{}: will be skipped in training and scoring: {reason}",
                target.column()
            ));
        }
    }
    report
}

/// Measures `site` on the grid of `resolution`. The telemetry is assumed validated (strictly
/// increasing, on the grid); a timestamp off the grid counts for the step before it.
pub fn quality_report(site: &SiteTelemetry, resolution: Resolution) -> QualityReport {
    let step = resolution.seconds();
    let (first, last) = match (site.timestamps.first(), site.timestamps.last()) {
        (Some(&first), Some(&last)) => (first, last),
        _ => (0, -step),
    };
    let expected_steps = usize::try_from((last - first).div_euclid(step) + 1).unwrap_or(0);
    let coverage = site
        .columns()
        .into_iter()
        .filter_map(|(name, column)| {
            let present = column?.iter().filter(|v| v.is_some()).count();
            let fraction = if expected_steps == 0 {
                0.0
            } else {
                present as f64 / expected_steps as f64
            };
            Some(ColumnCoverage {
                column: name.to_string(),
                fraction,
            })
        })
        .collect();

    let targets: Vec<&Vec<Option<f64>>> = site
        .columns()
        .into_iter()
        .filter(|(n, _)| TARGET_COLUMNS.contains(n))
        .filter_map(|(_, c)| c)
        .collect();
    // Gaps as (first missing grid index, length), found between consecutive observed steps.
    let mut gaps: Vec<(i64, i64)> = Vec::new();
    let mut next_expected = 0i64;
    for (i, &t) in site.timestamps.iter().enumerate() {
        let observed = targets
            .iter()
            .any(|column| column.get(i).is_some_and(Option::is_some));
        if !observed {
            continue;
        }
        let index = (t - first).div_euclid(step);
        if index > next_expected {
            gaps.push((next_expected, index - next_expected));
        }
        next_expected = index + 1;
    }
    let total = expected_steps as i64;
    if total > next_expected {
        gaps.push((next_expected, total - next_expected));
    }

    let longest_gap_steps = gaps.iter().map(|&(_, len)| len as usize).max().unwrap_or(0);
    let gap_count = gaps.len();
    gaps.sort_by_key(|&(start, len)| (std::cmp::Reverse(len), start));
    let largest_gaps = gaps
        .iter()
        .take(LARGEST_GAPS)
        .map(|&(start, len)| Gap {
            start: rfc3339(first + start * step),
            end: rfc3339(first + (start + len - 1) * step),
            steps: len as usize,
        })
        .collect();
    let rows = !site.timestamps.is_empty();
    QualityReport {
        site_id: site.site_id.clone(),
        resolution,
        first: if rows { rfc3339(first) } else { String::new() },
        last: if rows { rfc3339(last) } else { String::new() },
        span_days: expected_steps as f64 * step as f64 / 86_400.0,
        expected_steps,
        present_steps: site.len(),
        coverage,
        gap_count,
        longest_gap_steps,
        largest_gaps,
        pv_night_zero_steps: 0,
        warnings: Vec::new(),
    }
}

impl fmt::Display for QualityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "site {} ({})", self.site_id, self.resolution)?;
        writeln!(
            f,
            "  span      {} .. {} ({:.1} days)",
            self.first, self.last, self.span_days
        )?;
        let percent = |fraction: f64| 100.0 * fraction;
        let present = if self.expected_steps == 0 {
            0.0
        } else {
            self.present_steps as f64 / self.expected_steps as f64
        };
        writeln!(
            f,
            "  steps     {} of {} present ({:.1}%)",
            self.present_steps,
            self.expected_steps,
            percent(present)
        )?;
        let coverage: Vec<String> = self
            .coverage
            .iter()
            .map(|c| format!("{} {:.1}%", c.column, percent(c.fraction)))
            .collect();
        writeln!(f, "  coverage  {}", coverage.join(", "))?;
        write!(
            f,
            "  gaps      {}, longest {} steps",
            self.gap_count, self.longest_gap_steps
        )?;
        for gap in &self.largest_gaps {
            write!(
                f,
                "\n    {} .. {} ({} steps)",
                gap.start, gap.end, gap.steps
            )?;
        }
        if self.pv_night_zero_steps > 0 {
            write!(
                f,
                "\n  night     {} missing pv_kw steps with the sun down, filled with 0 kW",
                self.pv_night_zero_steps
            )?;
        }
        for warning in &self.warnings {
            write!(f, "\n  warning   {warning}")?;
        }
        Ok(())
    }
}
