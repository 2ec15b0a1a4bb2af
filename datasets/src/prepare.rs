//! From a fleet's regular series to per-site train/test sample sets with a chronological split.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::window::{OriginRange, build_samples};
use crate::{
    DatasetError, Normalization, RegularSeries, SampleSet, SiteMetadata, Target, WindowSpec,
};

const DAY_S: i64 = 86_400;

/// How to cut a fleet into supervised train and test sets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// Context length L in grid steps.
    pub context: usize,
    /// Horizon H in grid steps.
    pub horizon: usize,
    /// Fraction of each site's days (the last ones) held out for testing.
    pub test_fraction: f64,
    /// Origin stride (steps) for training windows; 1 uses every step.
    pub train_stride: usize,
    /// Origin stride (steps) for test windows; a day's worth gives one day-ahead forecast per
    /// day issued at 00:00 UTC.
    pub test_stride: usize,
}

impl SplitSpec {
    /// Day-ahead defaults for a resolution: one week of context, one day of horizon, the last
    /// 20% of days held out, every step a training origin, one test origin per day.
    pub fn day_ahead(steps_per_day: usize) -> Self {
        Self {
            context: 7 * steps_per_day,
            horizon: steps_per_day,
            test_fraction: 0.2,
            train_stride: 1,
            test_stride: steps_per_day,
        }
    }
}

/// One site's supervised data, split in time. Normalization was fitted on the train part only.
#[derive(Clone, Debug)]
pub struct PreparedSite {
    pub site: SiteMetadata,
    pub train: SampleSet,
    pub test: SampleSet,
    /// First target time of the test period (unix s, a UTC midnight).
    pub split_unix_s: i64,
}

/// Splits one site. Returns `Ok(None)` when the site does not measure `target`.
pub fn prepare_site(
    series: &RegularSeries,
    site: &SiteMetadata,
    target: Target,
    split: SplitSpec,
) -> Result<Option<PreparedSite>, DatasetError> {
    let t = &series.telemetry;
    let Some(values) = target.values(t) else {
        return Ok(None);
    };
    check_split(split)?;
    let (Some(&first), Some(&last)) = (t.timestamps.first(), t.timestamps.last()) else {
        return Ok(None);
    };
    let step_s = series.resolution.seconds();
    let first_day = first.div_euclid(DAY_S);
    let days = (last + step_s).div_euclid(DAY_S) - first_day;
    let train_days = ((days as f64) * (1.0 - split.test_fraction)).floor() as i64;
    let split_unix_s = (first_day + train_days) * DAY_S;
    let train_values = t
        .timestamps
        .iter()
        .zip(values)
        .filter(|(ts, _)| **ts < split_unix_s);
    let normalization = Normalization::fit(
        target,
        site.capacity_kw,
        train_values.filter_map(|(_, v)| *v),
    )?;
    let window = |stride, from, until| {
        let spec = WindowSpec {
            context: split.context,
            horizon: split.horizon,
            stride,
        };
        build_samples(
            series,
            site,
            target,
            spec,
            normalization,
            OriginRange { from, until },
        )
    };
    Ok(Some(PreparedSite {
        site: site.clone(),
        train: window(split.train_stride, i64::MIN, split_unix_s)?,
        test: window(split.test_stride, split_unix_s, i64::MAX)?,
        split_unix_s,
    }))
}

/// A site left out of a fleet's sample sets, and why (e.g. no complete window).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedSite {
    pub site_id: String,
    pub reason: String,
}

/// The sites of a fleet that can be trained and scored for one target, and those that cannot.
#[derive(Clone, Debug, Default)]
pub struct PreparedFleet {
    pub sites: Vec<PreparedSite>,
    /// Sites that measure the target but have no complete training or test window (too
    /// short, too gappy) or cannot be normalized; the others go on without them.
    pub skipped: Vec<SkippedSite>,
}

/// Why a prepared site cannot take part, if it cannot: a model needs training windows and a
/// score needs test windows.
pub fn unusable_reason(site: &PreparedSite, split: SplitSpec) -> Option<String> {
    let needed = format!(
        "{} context + {} horizon steps with no missing target",
        split.context, split.horizon
    );
    match (site.train.is_empty(), site.test.is_empty()) {
        (false, false) => None,
        (true, true) => Some(format!("no complete window ({needed})")),
        (true, false) => Some(format!(
            "no complete training window before the test period ({needed})"
        )),
        (false, true) => Some(format!(
            "no complete test window in the last {:.0}% of days ({needed})",
            100.0 * split.test_fraction
        )),
    }
}

/// Splits every site of a fleet that measures `target`, in parallel; `series[i]` belongs to
/// `sites[i]`. A site that cannot be split or has no complete training or test window is
/// skipped with its reason, never failing the fleet: one bad silo must not stop the others.
pub fn prepare_fleet(
    sites: &[SiteMetadata],
    series: &[RegularSeries],
    target: Target,
    split: SplitSpec,
) -> Result<PreparedFleet, DatasetError> {
    if sites.len() != series.len() {
        return Err(DatasetError::Window(format!(
            "{} metadata entries for {} series",
            sites.len(),
            series.len()
        )));
    }
    check_split(split)?;
    let outcomes: Vec<_> = sites
        .par_iter()
        .zip(series)
        .map(|(site, s)| (site, prepare_site(s, site, target, split)))
        .collect();
    let mut fleet = PreparedFleet::default();
    for (site, outcome) in outcomes {
        let reason = match outcome {
            Ok(None) => continue,
            Ok(Some(prepared)) => match unusable_reason(&prepared, split) {
                None => {
                    fleet.sites.push(prepared);
                    continue;
                }
                Some(reason) => reason,
            },
            Err(e) => e.to_string(),
        };
        fleet.skipped.push(SkippedSite {
            site_id: site.site_id.clone(),
            reason,
        });
    }
    Ok(fleet)
}

fn check_split(split: SplitSpec) -> Result<(), DatasetError> {
    if !(0.0..1.0).contains(&split.test_fraction) {
        return Err(DatasetError::Window(format!(
            "test fraction {} must be in [0, 1)",
            split.test_fraction
        )));
    }
    Ok(())
}

impl std::ops::Deref for PreparedFleet {
    type Target = [PreparedSite];
    fn deref(&self) -> &[PreparedSite] {
        &self.sites
    }
}

impl IntoIterator for PreparedFleet {
    type Item = PreparedSite;
    type IntoIter = std::vec::IntoIter<PreparedSite>;
    fn into_iter(self) -> Self::IntoIter {
        self.sites.into_iter()
    }
}

impl<'a> IntoIterator for &'a PreparedFleet {
    type Item = &'a PreparedSite;
    type IntoIter = std::slice::Iter<'a, PreparedSite>;
    fn into_iter(self) -> Self::IntoIter {
        self.sites.iter()
    }
}
