//! What must travel with a model version so serving rebuilds the training features exactly.

use datasets::features::{FUTURE_FEATURES, ORIGIN_FEATURES};
use datasets::schema::col;
use datasets::window::feature_count;
use datasets::{Resolution, SiteTelemetry, Target};
use serde::{Deserialize, Serialize};

use super::ServingError;
use crate::{ForecasterConfig, ModelSpec};

/// Version of the serving spec JSON; a registry refuses specs it cannot read.
pub const SERVING_FORMAT_VERSION: u32 = 1;

/// Days of load history a request must carry when the load normalization is fitted on it
/// (see [`NormalizationRule::TrailingHistory`]): four weeks hold every weekday four times, so
/// the mean and spread do not swing with one unusual day or weekend.
pub const LOAD_NORMALIZATION_DAYS: usize = 28;

/// A known-future covariate, named by its telemetry column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Covariate {
    #[serde(rename = "temperature_forecast_c")]
    TemperatureForecast,
    #[serde(rename = "ghi_forecast_w_m2")]
    GhiForecast,
    #[serde(rename = "cloud_cover_forecast")]
    CloudCoverForecast,
}

impl Covariate {
    pub const ALL: [Covariate; 3] = [
        Covariate::TemperatureForecast,
        Covariate::GhiForecast,
        Covariate::CloudCoverForecast,
    ];

    /// The telemetry column name, also the name a request uses.
    pub fn name(self) -> &'static str {
        match self {
            Covariate::TemperatureForecast => col::TEMPERATURE_FORECAST_C,
            Covariate::GhiForecast => col::GHI_FORECAST_W_M2,
            Covariate::CloudCoverForecast => col::CLOUD_COVER_FORECAST,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The unit requests carry it in (the telemetry schema's).
    pub fn unit(self) -> &'static str {
        match self {
            Covariate::TemperatureForecast => "degC",
            Covariate::GhiForecast => "W/m2",
            Covariate::CloudCoverForecast => "fraction",
        }
    }

    /// The covariates present in `telemetry`. A model reads a present column as data and an
    /// absent one as a constant zero (`datasets::features`), so a model trained on these
    /// series must be served these, and only these, covariates.
    pub fn present_in<'a>(telemetry: impl IntoIterator<Item = &'a SiteTelemetry>) -> Vec<Self> {
        let mut present = Vec::new();
        for t in telemetry {
            for (c, column) in Self::ALL.into_iter().zip([
                &t.temperature_forecast_c,
                &t.ghi_forecast_w_m2,
                &t.cloud_cover_forecast,
            ]) {
                if column.is_some() && !present.contains(&c) {
                    present.push(c);
                }
            }
        }
        present.sort();
        present
    }

    pub(crate) fn column(self, t: &SiteTelemetry) -> Option<&Vec<Option<f64>>> {
        match self {
            Covariate::TemperatureForecast => t.temperature_forecast_c.as_ref(),
            Covariate::GhiForecast => t.ghi_forecast_w_m2.as_ref(),
            Covariate::CloudCoverForecast => t.cloud_cover_forecast.as_ref(),
        }
    }

    pub(crate) fn column_mut(self, t: &mut SiteTelemetry) -> &mut Option<Vec<Option<f64>>> {
        match self {
            Covariate::TemperatureForecast => &mut t.temperature_forecast_c,
            Covariate::GhiForecast => &mut t.ghi_forecast_w_m2,
            Covariate::CloudCoverForecast => &mut t.cloud_cover_forecast,
        }
    }
}

/// How a request's target is scaled into the model's units and back.
///
/// Training scales each site with statistics of its private training period
/// (`datasets::Normalization::fit`), which the forecast server never sees. PV needs none: it
/// is divided by nameplate capacity, which the request carries, so serving is exact. Load is
/// z-scored; a request may carry its site's own training normalization (shared by its
/// operator), which makes serving exact too. Otherwise the mean and spread are fitted with
/// the same `Normalization::fit` on the request's last `steps` observed values: the closest
/// the server can get to the training statistics, since load level and spread drift slowly,
/// and it is the same function at both ends, so a site whose history matches its training
/// period gets exactly the training features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum NormalizationRule {
    /// Divide by the site's `capacity_kw` (PV).
    Capacity,
    /// Z-score fitted on the last `steps` observed values before the origin (load).
    TrailingHistory { steps: usize },
}

/// Everything a forecast server needs besides the weights, stored as JSON in a model
/// version's manifest: the target, grid, window and network, the covariates the model was
/// trained with, how a request is normalized, and the feature layout names, so a build whose
/// features changed refuses the model instead of feeding it different inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingSpec {
    pub format_version: u32,
    pub target: Target,
    pub resolution: Resolution,
    /// Past target steps the model reads (L).
    pub context: usize,
    /// Steps it forecasts (H).
    pub horizon: usize,
    /// The network; its `quantiles` are the levels every forecast carries.
    pub architecture: ForecasterConfig,
    /// Known-future covariates the model was trained with, sorted.
    pub covariates: Vec<Covariate>,
    pub normalization: NormalizationRule,
    /// `datasets::features::FUTURE_FEATURES` of the training build.
    pub future_features: Vec<String>,
    /// `datasets::features::ORIGIN_FEATURES` of the training build.
    pub origin_features: Vec<String>,
}

impl ServingSpec {
    /// The spec of a model trained on `context`-step windows at `resolution` with the given
    /// covariates (see [`Covariate::present_in`]); the horizon comes from the architecture.
    pub fn new(
        target: Target,
        resolution: Resolution,
        context: usize,
        architecture: ForecasterConfig,
        mut covariates: Vec<Covariate>,
    ) -> Result<Self, ServingError> {
        covariates.sort();
        covariates.dedup();
        let normalization = match target {
            Target::Pv => NormalizationRule::Capacity,
            Target::Load | Target::NetLoad => NormalizationRule::TrailingHistory {
                steps: LOAD_NORMALIZATION_DAYS * resolution.steps_per_day(),
            },
        };
        let spec = Self {
            format_version: SERVING_FORMAT_VERSION,
            target,
            resolution,
            context,
            horizon: architecture.horizon,
            architecture,
            covariates,
            normalization,
            future_features: FUTURE_FEATURES.iter().map(|s| s.to_string()).collect(),
            origin_features: ORIGIN_FEATURES.iter().map(|s| s.to_string()).collect(),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The spec of a saved artifact's model; artifacts do not record covariates.
    pub fn from_model_spec(
        model: &ModelSpec,
        covariates: Vec<Covariate>,
    ) -> Result<Self, ServingError> {
        let resolution = Resolution::from_seconds(model.step_seconds).ok_or_else(|| {
            ServingError::InvalidSpec(format!(
                "a {} s step is not a supported resolution",
                model.step_seconds
            ))
        })?;
        Self::new(
            model.target,
            resolution,
            model.context,
            model.architecture.clone(),
            covariates,
        )
    }

    /// Checks that the spec is consistent and that this build computes the same features.
    pub fn validate(&self) -> Result<(), ServingError> {
        let bad = |reason: String| Err(ServingError::InvalidSpec(reason));
        if self.format_version != SERVING_FORMAT_VERSION {
            return bad(format!(
                "format version {} (this build reads {SERVING_FORMAT_VERSION})",
                self.format_version
            ));
        }
        self.architecture
            .validate()
            .map_err(|e| ServingError::InvalidSpec(e.to_string()))?;
        if self.context == 0 || self.horizon != self.architecture.horizon {
            return bad(format!(
                "context {} / horizon {} against an architecture of horizon {}",
                self.context, self.horizon, self.architecture.horizon
            ));
        }
        let expected = feature_count(self.context, self.horizon);
        if self.architecture.n_features != expected {
            return bad(format!(
                "the architecture reads {} inputs, context {} and horizon {} give {expected}",
                self.architecture.n_features, self.context, self.horizon
            ));
        }
        if self.future_features != FUTURE_FEATURES || self.origin_features != ORIGIN_FEATURES {
            return bad(format!(
                "trained on features {:?} + {:?}, this build computes {FUTURE_FEATURES:?} + {ORIGIN_FEATURES:?}",
                self.future_features, self.origin_features
            ));
        }
        if self.covariates.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!(
                "covariates {:?} must be sorted and distinct",
                self.covariates
            ));
        }
        match (self.target, self.normalization) {
            (Target::Pv, NormalizationRule::Capacity) => Ok(()),
            (Target::Load | Target::NetLoad, NormalizationRule::TrailingHistory { steps })
                if steps >= 2 =>
            {
                Ok(())
            }
            (target, rule) => bad(format!("{rule:?} cannot normalize {target:?}")),
        }
    }

    /// Steps of target history a request needs: the context, and for a load normalization
    /// fitted on the request, the trailing span.
    pub fn history_steps(&self, has_site_normalization: bool) -> usize {
        match self.normalization {
            NormalizationRule::TrailingHistory { steps } if !has_site_normalization => {
                steps.max(self.context)
            }
            _ => self.context,
        }
    }

    pub fn to_json(&self) -> Result<String, ServingError> {
        serde_json::to_string(self).map_err(|e| ServingError::InvalidSpec(e.to_string()))
    }

    /// Parses and validates a spec stored by [`Self::to_json`].
    pub fn from_json(text: &str) -> Result<Self, ServingError> {
        let spec: Self = serde_json::from_str(text).map_err(|e| {
            ServingError::InvalidSpec(format!("line {} column {}: {e}", e.line(), e.column()))
        })?;
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_spec_round_trips_through_json() {
        let architecture = ForecasterConfig::day_ahead(Target::Load, feature_count(48, 24), 24)
            .with_hidden(vec![16]);
        let spec = ServingSpec::new(
            Target::Load,
            Resolution::Hour,
            48,
            architecture,
            vec![Covariate::GhiForecast, Covariate::TemperatureForecast],
        )
        .unwrap();
        let json = spec.to_json().unwrap();
        assert!(json.contains("\"temperature_forecast_c\""), "{json}");
        assert!(json.contains("\"trailing_history\""), "{json}");
        assert_eq!(ServingSpec::from_json(&json).unwrap(), spec);
        assert!(json.len() < 2_000, "spec is {} bytes", json.len());
    }

    #[test]
    fn a_spec_from_a_build_with_other_features_is_refused() {
        let architecture = ForecasterConfig::new(feature_count(48, 24), 24);
        let mut spec =
            ServingSpec::new(Target::Pv, Resolution::Hour, 48, architecture, vec![]).unwrap();
        spec.future_features.push("wind_forecast".into());
        let err = ServingSpec::from_json(&spec.to_json().unwrap()).unwrap_err();
        assert!(err.to_string().contains("wind_forecast"), "{err}");
    }
}
