//! Reference forecasts every learned model must beat: persistence, seasonal naive and
//! hour-of-week climatology.

use std::collections::HashMap;

use datasets::SampleSet;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::forecast::QuantileForecast;
use crate::samples::check_samples;

const HOURS_PER_WEEK: usize = 168;

/// Repeats the last observed value (the newest context step) over the whole horizon.
pub fn persistence(data: &SampleSet) -> Result<QuantileForecast, ModelError> {
    check_samples(data)?;
    if data.context == 0 {
        return Err(ModelError::ContextTooShort {
            method: "persistence",
            needed: 1,
            context: 0,
        });
    }
    let mut values = Vec::with_capacity(data.y.len());
    for i in 0..data.origins.len() {
        let last = data.x_row(i)[data.context - 1];
        values.extend(std::iter::repeat_n(last, data.horizon));
    }
    Ok(QuantileForecast::point(data.horizon, values))
}

/// Season of a seasonal naive forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    Day,
    Week,
}

impl Season {
    pub fn seconds(self) -> i64 {
        match self {
            Season::Day => 86_400,
            Season::Week => 7 * 86_400,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Season::Day => "seasonal naive (previous day)",
            Season::Week => "seasonal naive (previous week)",
        }
    }
}

/// Forecasts each step with the value one season earlier, taken from the context. Steps
/// further ahead than a season reuse the last observed season (e.g. a 48 h horizon with a
/// daily season repeats yesterday twice). Fails if the context is shorter than that.
pub fn seasonal_naive(data: &SampleSet, season: Season) -> Result<QuantileForecast, ModelError> {
    check_samples(data)?;
    if season.seconds() % data.step_seconds != 0 {
        return Err(ModelError::InvalidSamples(format!(
            "a step of {} s does not divide the {} s season",
            data.step_seconds,
            season.seconds()
        )));
    }
    let period = (season.seconds() / data.step_seconds) as usize;
    let seasons_back = |step: usize| step / period + 1;
    let needed = period * seasons_back(data.horizon - 1);
    if data.context < needed {
        return Err(ModelError::ContextTooShort {
            method: season.method(),
            needed,
            context: data.context,
        });
    }
    let mut values = Vec::with_capacity(data.y.len());
    for i in 0..data.origins.len() {
        let context = &data.x_row(i)[..data.context];
        values.extend(
            (0..data.horizon).map(|h| context[data.context + h - period * seasons_back(h)]),
        );
    }
    Ok(QuantileForecast::point(data.horizon, values))
}

/// Mean target per hour of the week, per site, fitted on training targets in kW.
///
/// Hours of the week are UTC (Monday 00:00 UTC is hour 0), taken at each target step's start
/// time `origin + h * step_seconds`; for sites far from UTC the weekly profile is merely
/// shifted, not blurred, since every site keeps its own profile. An hour never seen in
/// training falls back to the site's overall mean.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Climatology {
    profiles: HashMap<String, Vec<f64>>,
}

impl Climatology {
    pub fn fit(train: &[SampleSet]) -> Result<Self, ModelError> {
        let mut sums: HashMap<String, (Vec<f64>, Vec<usize>)> = HashMap::new();
        for data in train {
            check_samples(data)?;
            let h = data.horizon;
            for i in 0..data.origins.len() {
                let site = data.sites[i] as usize;
                let norm = data.normalizations[site];
                let (sum, count) = sums
                    .entry(data.site_ids[site].clone())
                    .or_insert_with(|| (vec![0.0; HOURS_PER_WEEK], vec![0; HOURS_PER_WEEK]));
                for step in 0..h {
                    let hour = hour_of_week(data.origins[i] + step as i64 * data.step_seconds);
                    sum[hour] += f64::from(norm.denormalize(data.y[i * h + step]));
                    count[hour] += 1;
                }
            }
        }
        let profiles = sums
            .into_iter()
            .map(|(site, (sum, count))| {
                let overall = sum.iter().sum::<f64>() / count.iter().sum::<usize>().max(1) as f64;
                let profile = sum
                    .iter()
                    .zip(&count)
                    .map(|(&s, &c)| if c > 0 { s / c as f64 } else { overall })
                    .collect();
                (site, profile)
            })
            .collect();
        Ok(Self { profiles })
    }

    /// Profile of `site` in kW, hour-of-week indexed, if it was in the training data.
    pub fn profile(&self, site: &str) -> Option<&[f64]> {
        self.profiles.get(site).map(Vec::as_slice)
    }

    /// Forecasts `data` (normalized with each sample's own site normalization).
    pub fn predict(&self, data: &SampleSet) -> Result<QuantileForecast, ModelError> {
        check_samples(data)?;
        let h = data.horizon;
        let mut values = Vec::with_capacity(data.y.len());
        for i in 0..data.origins.len() {
            let site = data.sites[i] as usize;
            let site_id = &data.site_ids[site];
            let profile = self
                .profile(site_id)
                .ok_or_else(|| ModelError::UnknownSite(site_id.clone()))?;
            let norm = data.normalizations[site];
            values.extend((0..h).map(|step| {
                let hour = hour_of_week(data.origins[i] + step as i64 * data.step_seconds);
                norm.normalize(profile[hour] as f32)
            }));
        }
        Ok(QuantileForecast::point(h, values))
    }
}

/// UTC hour of the week, Monday 00:00 = 0. The Unix epoch fell on a Thursday (day 3).
pub fn hour_of_week(unix_s: i64) -> usize {
    let hours = unix_s.div_euclid(3_600);
    let weekday = (hours.div_euclid(24) + 3).rem_euclid(7);
    (weekday * 24 + hours.rem_euclid(24)) as usize
}
