//! The forecast board: participants publish their own sites' quantile forecasts (computed
//! locally; raw telemetry never travels) and market engines read them by site, sector and time
//! range, or summed per sector.
//!
//! - [`SiteForecast`] and its validation ([`SiteForecast::validate`]): every bound here.
//! - [`SiteForecast::check_version`]: the declared model version against the registry's.
//! - [`store::Board`]: the redb table (latest forecast per participant and site).
//! - [`grpc`]: proto <-> domain and the status of every refusal, for the forecast service.

pub mod grpc;
pub mod store;

use std::collections::BTreeMap;

use datasets::{Sector, Target};
use serde::{Deserialize, Serialize};

use crate::registry::{ModelRef, Selector};

pub use store::Board;

/// Step lengths a forecast may use (seconds).
pub const STEP_SECONDS: [u32; 4] = [300, 900, 1800, 3600];
/// Longest forecast: 7 days (2016 steps at 5 minutes).
pub const MAX_HORIZON_S: i64 = 7 * 86_400;
/// Longest query range: 31 days.
pub const MAX_QUERY_RANGE_S: i64 = 31 * 86_400;
/// Sites one participant may keep on the board.
pub const MAX_SITES_PER_PARTICIPANT: usize = 64;
/// Longest site or sector label.
pub const MAX_LABEL_LEN: usize = 64;
/// Longest model reference or version id.
pub const MAX_MODEL_REF_LEN: usize = 160;
/// Largest magnitude of a forecast value (kW): far above any site, far below f64 trouble when
/// summed over a sector.
pub const MAX_ABS_KW: f64 = 1e7;
/// How far in the future `issued_unix_s` may lie (clock skew).
pub const ISSUE_SKEW_S: i64 = 300;

/// Why the board refused a publish or a query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoardError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(
        "site `{site}` already has a forecast issued at {stored}; {issued} is older (publish a newer issue)"
    )]
    Stale {
        site: String,
        stored: i64,
        issued: i64,
    },
    #[error("participant `{0}` already has {MAX_SITES_PER_PARTICIPANT} sites on the board")]
    TooManySites(String),
    /// The declared model or manifest id is not in the registry.
    #[error("{field}: {reason}")]
    UnknownVersion { field: &'static str, reason: String },
    #[error("board store: {0}")]
    Store(String),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> BoardError {
    BoardError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One site's forecast as published: p10/p50/p90 in kW for each step starting at
/// `timestamps_unix_s[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteForecast {
    /// The publisher (the coordinator sets it from the verified signature).
    pub participant_id: String,
    pub site: String,
    pub sector: String,
    pub target: Target,
    /// Model reference and the manifest id of the version that computed it (as declared by the
    /// publisher; the board does not recompute forecasts).
    pub model: String,
    pub version_id: String,
    pub issued_unix_s: i64,
    pub step_s: u32,
    pub timestamps_unix_s: Vec<i64>,
    pub p10_kw: Vec<f64>,
    pub p50_kw: Vec<f64>,
    pub p90_kw: Vec<f64>,
}

/// `[A-Za-z0-9_.-]{1,64}`: labels become store keys, so no separators.
pub fn check_label(field: &str, value: &str) -> Result<(), BoardError> {
    if value.is_empty() || value.len() > MAX_LABEL_LEN {
        return Err(invalid(
            field,
            format!("must be 1 to {MAX_LABEL_LEN} characters"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(
            field,
            format!("character {c:?} not allowed (use A-Z a-z 0-9 _ . -)"),
        ));
    }
    Ok(())
}

impl SiteForecast {
    /// Checks every field; `now_unix_s` bounds the issue time.
    pub fn validate(&self, now_unix_s: i64) -> Result<(), BoardError> {
        check_label("participant_id", &self.participant_id)?;
        check_label("site", &self.site)?;
        check_label("sector", &self.sector)?;
        if self.model.is_empty() || self.model.len() > MAX_MODEL_REF_LEN {
            return Err(invalid(
                "model",
                format!("must be 1 to {MAX_MODEL_REF_LEN} characters (NAME@VERSION)"),
            ));
        }
        self.model
            .parse::<ModelRef>()
            .map_err(|e| invalid("model", e.to_string()))?;
        if self.version_id.is_empty()
            || self.version_id.len() > 64
            || !self.version_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid(
                "version_id",
                "must be the manifest id (1 to 64 hex digits)",
            ));
        }
        if !STEP_SECONDS.contains(&self.step_s) {
            return Err(invalid(
                "step_s",
                format!("{} is not one of {STEP_SECONDS:?}", self.step_s),
            ));
        }
        let step = i64::from(self.step_s);
        let n = self.timestamps_unix_s.len();
        let max_steps = (MAX_HORIZON_S / step) as usize;
        if n == 0 || n > max_steps {
            return Err(invalid(
                "timestamps_unix_s",
                format!("{n} steps; need 1 to {max_steps} (7 days) at {step} s"),
            ));
        }
        for (field, values) in [
            ("p10_kw", &self.p10_kw),
            ("p50_kw", &self.p50_kw),
            ("p90_kw", &self.p90_kw),
        ] {
            if values.len() != n {
                return Err(invalid(
                    field,
                    format!("{} values for {n} timestamps", values.len()),
                ));
            }
        }
        let first = self.timestamps_unix_s[0];
        if first <= 0 || first.rem_euclid(step) != 0 {
            return Err(invalid(
                "timestamps_unix_s[0]",
                format!("{first} is not a positive multiple of step_s {step}"),
            ));
        }
        for (i, pair) in self.timestamps_unix_s.windows(2).enumerate() {
            if pair[1] != pair[0] + step {
                return Err(invalid(
                    format!("timestamps_unix_s[{}]", i + 1),
                    format!("{} does not follow {} by {step} s", pair[1], pair[0]),
                ));
            }
        }
        if self.issued_unix_s <= 0 || self.issued_unix_s > first {
            return Err(invalid(
                "issued_unix_s",
                format!(
                    "{} must be positive and at most the first step {first}",
                    self.issued_unix_s
                ),
            ));
        }
        if self.issued_unix_s > now_unix_s + ISSUE_SKEW_S {
            return Err(invalid(
                "issued_unix_s",
                format!(
                    "{} lies in the future (now {now_unix_s})",
                    self.issued_unix_s
                ),
            ));
        }
        for i in 0..n {
            let (p10, p50, p90) = (self.p10_kw[i], self.p50_kw[i], self.p90_kw[i]);
            for (field, v) in [("p10_kw", p10), ("p50_kw", p50), ("p90_kw", p90)] {
                if !v.is_finite() || v.abs() > MAX_ABS_KW {
                    return Err(invalid(
                        format!("{field}[{i}]"),
                        format!("{v} is not a finite value within ±{MAX_ABS_KW} kW"),
                    ));
                }
                if self.target == Target::Pv && v < 0.0 {
                    return Err(invalid(
                        format!("{field}[{i}]"),
                        format!("{v} is negative; PV generation is not"),
                    ));
                }
            }
            if !(p10 <= p50 && p50 <= p90) {
                return Err(invalid(
                    format!("quantiles[{i}]"),
                    format!("p10 {p10} <= p50 {p50} <= p90 {p90} does not hold (crossing)"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the forecast against the registered version its `version_id` names: a version
    /// number in `model` must be that version's, and target and sector must be the model's
    /// (a forecast filed under another sector or target would skew that total).
    pub fn check_version(&self, registered: &RegisteredVersion<'_>) -> Result<(), BoardError> {
        let reference = self
            .model
            .parse::<ModelRef>()
            .map_err(|e| invalid("model", e.to_string()))?;
        if reference.model != registered.model {
            return Err(invalid(
                "model",
                format!(
                    "`{}` names model `{}`, version_id is a version of `{}`",
                    self.model, reference.model, registered.model
                ),
            ));
        }
        if let Selector::Version(n) = reference.selector
            && n != registered.version
        {
            return Err(invalid(
                "model",
                format!(
                    "`{}` names version {n}, version_id is version {} of `{}`",
                    self.model, registered.version, registered.model
                ),
            ));
        }
        if self.target != registered.target {
            return Err(invalid(
                "target",
                format!(
                    "{:?}, but model `{}` forecasts {:?}",
                    self.target, registered.model, registered.target
                ),
            ));
        }
        if self.sector != registered.sector.as_str() {
            return Err(invalid(
                "sector",
                format!(
                    "`{}`, but model `{}` is a {} model",
                    self.sector,
                    registered.model,
                    registered.sector.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// The steps starting in `[from, to)`, or `None` when none do.
    pub fn clipped(&self, from_unix_s: i64, to_unix_s: i64) -> Option<SiteForecast> {
        let start = self.timestamps_unix_s.partition_point(|&t| t < from_unix_s);
        let end = self.timestamps_unix_s.partition_point(|&t| t < to_unix_s);
        if start >= end {
            return None;
        }
        Some(SiteForecast {
            timestamps_unix_s: self.timestamps_unix_s[start..end].to_vec(),
            p10_kw: self.p10_kw[start..end].to_vec(),
            p50_kw: self.p50_kw[start..end].to_vec(),
            p90_kw: self.p90_kw[start..end].to_vec(),
            ..self.clone()
        })
    }
}

/// What the registry holds about the version a forecast declares (from its signed manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisteredVersion<'a> {
    pub model: &'a str,
    pub version: u64,
    pub target: Target,
    pub sector: Sector,
}

/// What a market engine asks for; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BoardQuery {
    pub sector: Option<String>,
    pub site: Option<String>,
    pub participant_id: Option<String>,
    pub target: Option<Target>,
    pub from_unix_s: i64,
    pub to_unix_s: i64,
}

impl BoardQuery {
    pub fn validate(&self) -> Result<(), BoardError> {
        for (field, value) in [
            ("sector", &self.sector),
            ("site", &self.site),
            ("participant_id", &self.participant_id),
        ] {
            if let Some(v) = value {
                check_label(field, v)?;
            }
        }
        let range = self.to_unix_s.saturating_sub(self.from_unix_s);
        if range <= 0 || range > MAX_QUERY_RANGE_S {
            return Err(invalid(
                "to_unix_s",
                format!(
                    "range [{}, {}) must be non-empty and at most {MAX_QUERY_RANGE_S} s (31 days)",
                    self.from_unix_s, self.to_unix_s
                ),
            ));
        }
        Ok(())
    }

    fn matches(&self, f: &SiteForecast) -> bool {
        self.sector.as_ref().is_none_or(|s| *s == f.sector)
            && self.site.as_ref().is_none_or(|s| *s == f.site)
            && self
                .participant_id
                .as_ref()
                .is_none_or(|p| *p == f.participant_id)
            && self.target.is_none_or(|t| t == f.target)
    }
}

/// Per-timestamp sums over a set of forecasts.
///
/// `p50_kw` is the sum of the sites' medians. Quantiles do not add: the sum of the p10s is the
/// p10 of the total only if all sites err together (perfectly correlated errors); with any
/// independence the total's true band is narrower. So `p10_bound_kw`/`p90_bound_kw` are
/// conservative bounds of the total's band, not its quantiles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SectorTotal {
    pub timestamps_unix_s: Vec<i64>,
    pub p10_bound_kw: Vec<f64>,
    pub p50_kw: Vec<f64>,
    pub p90_bound_kw: Vec<f64>,
    /// Forecasts contributing at each timestamp (sites with other step lengths or ranges may
    /// cover only some timestamps).
    pub sites: Vec<u32>,
}

impl SectorTotal {
    pub fn sum(forecasts: &[SiteForecast]) -> Self {
        let mut by_time: BTreeMap<i64, (f64, f64, f64, u32)> = BTreeMap::new();
        for f in forecasts {
            for (i, &t) in f.timestamps_unix_s.iter().enumerate() {
                let e = by_time.entry(t).or_default();
                e.0 += f.p10_kw[i];
                e.1 += f.p50_kw[i];
                e.2 += f.p90_kw[i];
                e.3 += 1;
            }
        }
        let mut total = SectorTotal::default();
        for (t, (p10, p50, p90, n)) in by_time {
            total.timestamps_unix_s.push(t);
            total.p10_bound_kw.push(p10);
            total.p50_kw.push(p50);
            total.p90_bound_kw.push(p90);
            total.sites.push(n);
        }
        total
    }
}

#[cfg(test)]
mod tests;
