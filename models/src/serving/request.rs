//! What a market engine sends, and the checks that turn it into a model input or a precise
//! [`ServingError`].

use datasets::{Normalization, RegularSeries, Resolution, Sector, SiteKind, SiteMetadata, Target};
use serde::{Deserialize, Serialize};

use super::ServingError;
use super::spec::{Covariate, ServingSpec};

/// The site facts the features use: calendar features follow its local time, clear-sky
/// irradiance its position, PV is scaled by its capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServedSite {
    pub kind: SiteKind,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// PV nameplate capacity (DC) in kW; 0 for sites without PV.
    pub capacity_kw: f64,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
}

/// Observed target values on the grid, oldest first, ending one step before the origin.
///
/// Only the target is needed: the features read the past through the target alone, and the
/// weather through the forecasts over the horizon ([`FutureCovariates`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub timestamps_unix_s: Vec<i64>,
    pub values_kw: Vec<f64>,
}

/// One known-future covariate's values, one per [`FutureCovariates`] timestamp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CovariateSeries {
    /// Telemetry column name, e.g. `ghi_forecast_w_m2`.
    pub name: String,
    pub values: Vec<f64>,
}

/// Weather forecasts for the steps from the origin on; they must cover the model's full
/// horizon, which the network reads whatever horizon is requested.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FutureCovariates {
    pub timestamps_unix_s: Vec<i64>,
    pub covariates: Vec<CovariateSeries>,
}

/// One single-site forecast request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastRequest {
    pub site: ServedSite,
    pub target: Target,
    pub resolution: Resolution,
    /// Issue time: the first forecast step (UTC unix seconds, on the grid).
    pub origin_unix_s: i64,
    /// Steps to return, at most the model's horizon.
    pub horizon_steps: usize,
    pub history: History,
    pub future: FutureCovariates,
    /// The site's own training normalization, when its operator shares it: serving then
    /// scales exactly as training did (see `NormalizationRule`). Ignored for PV.
    #[serde(default)]
    pub site_normalization: Option<Normalization>,
    /// Covariates the site has no feed of at all (not a gap: no such column). The model reads
    /// them as training read a site without the column: a constant 0, so a weatherless site
    /// that trained a weather model can forecast with it. A covariate neither sent nor
    /// declared absent is refused.
    #[serde(default)]
    pub absent_covariates: Vec<Covariate>,
}

impl ForecastRequest {
    /// A request for the site of `series` from grid index `origin`: the trailing run of
    /// observed target values before it (at most `max_history` steps), and every covariate the
    /// series has from the origin on, while all of them are present (at most `max_future`
    /// steps). Nothing is filled in or invented. Used by `gridfed forecast` (through the
    /// forecast service) and by participants forecasting their own sites.
    pub fn from_series(
        series: &RegularSeries,
        site: &SiteMetadata,
        target: Target,
        origin: usize,
        horizon_steps: usize,
        (max_history, max_future): (usize, usize),
    ) -> Result<Self, ServingError> {
        let t = &series.telemetry;
        let values = target_values(series, target)?;
        if origin == 0 || origin > t.timestamps.len() {
            return Err(ServingError::Series(format!(
                "origin index {origin} is outside the series of {} steps",
                t.timestamps.len()
            )));
        }
        let mut start = origin;
        while start > 0 && origin - start < max_history && values[start - 1].is_some() {
            start -= 1;
        }
        let covariates: Vec<(Covariate, &Vec<Option<f64>>)> = Covariate::ALL
            .into_iter()
            .filter_map(|c| c.column(t).map(|column| (c, column)))
            .collect();
        let mut end = origin;
        while end < t.timestamps.len()
            && end - origin < max_future
            && covariates.iter().all(|(_, c)| c[end].is_some())
        {
            end += 1;
        }
        Ok(ForecastRequest {
            site: ServedSite {
                kind: site.kind,
                latitude: site.latitude,
                longitude: site.longitude,
                capacity_kw: site.capacity_kw,
                timezone: site.timezone.clone(),
            },
            target,
            resolution: series.resolution,
            origin_unix_s: match t.timestamps.get(origin) {
                Some(&unix_s) => unix_s,
                None => t.timestamps[origin - 1] + series.resolution.seconds(),
            },
            horizon_steps,
            history: History {
                timestamps_unix_s: t.timestamps[start..origin].to_vec(),
                values_kw: values[start..origin].iter().flatten().copied().collect(),
            },
            future: FutureCovariates {
                timestamps_unix_s: t.timestamps[origin..end].to_vec(),
                covariates: covariates
                    .iter()
                    .map(|(c, column)| CovariateSeries {
                        name: c.name().to_string(),
                        values: column[origin..end].iter().flatten().copied().collect(),
                    })
                    .collect(),
            },
            site_normalization: None,
            absent_covariates: Covariate::ALL
                .into_iter()
                .filter(|c| c.column(t).is_none())
                .collect(),
        })
    }
}

fn target_values(series: &RegularSeries, target: Target) -> Result<&[Option<f64>], ServingError> {
    let t = &series.telemetry;
    target.values(t).map(Vec::as_slice).ok_or_else(|| {
        ServingError::Series(format!(
            "site `{}` has no `{}` column",
            t.site_id,
            target.column()
        ))
    })
}

/// The grid index a forecast of `series` starts at: the step at `at_unix_s`, or by default the
/// step after the last observed target value.
pub fn origin_index(
    series: &RegularSeries,
    target: Target,
    at_unix_s: Option<i64>,
) -> Result<usize, ServingError> {
    let site = &series.telemetry.site_id;
    match at_unix_s {
        Some(unix_s) => series.index_of(unix_s).ok_or_else(|| {
            ServingError::Series(format!(
                "origin {unix_s} is not a {} step of site `{site}`'s series",
                series.resolution.as_str()
            ))
        }),
        None => target_values(series, target)?
            .iter()
            .rposition(Option::is_some)
            .map(|i| i + 1)
            .ok_or_else(|| {
                ServingError::Series(format!(
                    "site `{site}` has no {} observations",
                    target.column()
                ))
            }),
    }
}

impl ServedSite {
    /// The metadata the feature code takes. Sector, tilt and azimuth do not enter the
    /// features, so fixed values stand in for them.
    pub(crate) fn metadata(&self) -> Result<SiteMetadata, ServingError> {
        let bad = |field, reason: String| Err(ServingError::InvalidSite { field, reason });
        if !(-90.0..=90.0).contains(&self.latitude) {
            return bad(
                "latitude",
                format!("{} is outside [-90, 90]", self.latitude),
            );
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return bad(
                "longitude",
                format!("{} is outside [-180, 180]", self.longitude),
            );
        }
        if !(self.capacity_kw.is_finite() && self.capacity_kw >= 0.0) {
            return bad(
                "capacity_kw",
                format!("{} must be finite and >= 0", self.capacity_kw),
            );
        }
        if self.kind.has_pv() && self.capacity_kw <= 0.0 {
            return bad("capacity_kw", "a site with PV needs capacity_kw > 0".into());
        }
        let site = SiteMetadata {
            site_id: String::new(),
            kind: self.kind,
            sector: Sector::Commercial,
            latitude: self.latitude,
            longitude: self.longitude,
            capacity_kw: self.capacity_kw,
            timezone: self.timezone.clone(),
            pv_tilt_deg: 0.0,
            pv_azimuth_deg: 180.0,
            import_limit_kw: None,
            export_limit_kw: None,
        };
        if site.tz().is_none() {
            return bad(
                "timezone",
                format!("unknown time zone `{}` (use an IANA name)", self.timezone),
            );
        }
        Ok(site)
    }
}

/// Checks that `timestamps` are on the grid, increasing and gap-free.
pub(crate) fn check_grid(
    field: &'static str,
    timestamps: &[i64],
    resolution: Resolution,
) -> Result<(), ServingError> {
    let step = resolution.seconds();
    for (row, &unix_s) in timestamps.iter().enumerate() {
        if unix_s.rem_euclid(step) != 0 {
            return Err(ServingError::OffGrid {
                field,
                row,
                unix_s,
                resolution,
            });
        }
        if row == 0 {
            continue;
        }
        let previous = timestamps[row - 1];
        if unix_s <= previous {
            return Err(ServingError::NotIncreasing {
                field,
                row,
                unix_s,
                previous,
            });
        }
        if unix_s != previous + step {
            return Err(ServingError::Gap {
                field,
                row,
                unix_s,
                expected: previous + step,
                resolution,
            });
        }
    }
    Ok(())
}

/// Checks that `values` has one finite value per timestamp.
pub(crate) fn check_values(
    field: impl Fn() -> String,
    values: &[f64],
    timestamps: usize,
) -> Result<(), ServingError> {
    if values.len() != timestamps {
        return Err(ServingError::LengthMismatch {
            field: field(),
            len: values.len(),
            expected: timestamps,
        });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(row) => Err(ServingError::NonFinite {
            field: field(),
            row,
            value: values[row],
        }),
        None => Ok(()),
    }
}

/// The request's values of each covariate the model reads, in `spec.covariates` order;
/// `None` for one the request declares absent (the site has no such feed).
pub(crate) fn model_covariates<'a>(
    spec: &ServingSpec,
    future: &'a FutureCovariates,
    absent: &[Covariate],
) -> Result<Vec<Option<&'a [f64]>>, ServingError> {
    let mut found: Vec<Option<&[f64]>> = vec![None; spec.covariates.len()];
    for series in &future.covariates {
        let slot = Covariate::from_name(&series.name)
            .and_then(|c| spec.covariates.iter().position(|&used| used == c))
            .ok_or_else(|| ServingError::UnknownCovariate {
                name: series.name.clone(),
                expected: spec
                    .covariates
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if found[slot].is_some() || absent.contains(&spec.covariates[slot]) {
            return Err(ServingError::DuplicateCovariate {
                name: series.name.clone(),
            });
        }
        check_values(
            || format!("future.{}", series.name),
            &series.values,
            future.timestamps_unix_s.len(),
        )?;
        // Units as the telemetry schema's: degC, W/m2, cloud cover as a fraction.
        for (row, &value) in series.values.iter().enumerate() {
            if let Some(reason) = datasets::reader::weather_value_problem(&series.name, value) {
                return Err(ServingError::Implausible {
                    field: format!("future.{}", series.name),
                    row,
                    value,
                    reason,
                });
            }
        }
        found[slot] = Some(&series.values);
    }
    found
        .into_iter()
        .zip(&spec.covariates)
        .map(|(values, c)| match values {
            Some(values) => Ok(Some(values)),
            None if absent.contains(c) => Ok(None),
            None => Err(ServingError::MissingCovariate { name: c.name() }),
        })
        .collect()
}

/// The request's target scaling: the site's own if given (load, net load), else by the
/// spec's rule.
pub(crate) fn normalization(
    spec: &ServingSpec,
    request: &ForecastRequest,
    history_kw: &[f64],
) -> Result<Normalization, ServingError> {
    if spec.target != Target::Pv
        && let Some(n) = request.site_normalization
    {
        if !(n.offset_kw.is_finite() && n.scale_kw.is_finite() && n.scale_kw > 0.0) {
            return Err(ServingError::InvalidNormalization(format!(
                "offset {} / scale {} must be finite with scale > 0",
                n.offset_kw, n.scale_kw
            )));
        }
        return Ok(n);
    }
    Ok(Normalization::fit(
        spec.target,
        request.site.capacity_kw,
        history_kw.iter().copied(),
    )?)
}
