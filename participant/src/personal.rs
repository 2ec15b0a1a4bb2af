//! Forecasting the site with its own fine-tuned model: the artifact and seasonal guard
//! decision the daemon left in `personalized_model_dir` after the federation's last round.
//! Everything here runs on the site; nothing is sent.
//!
//! The guard's decision is honoured: where the fine-tuned model lost to seasonal naive on the
//! site's validation days, the forecast is seasonal naive (the value one season back) with the
//! guard's residual quantile offsets as the band, exactly as the guard scored it.

use std::path::Path;

use datasets::{RegularSeries, SiteMetadata, Target};
use models::serving::{Covariate, QuantileForecast, ServingModel};
use models::{GuardDecision, ModelArtifact, Season, SiteChoice};

use crate::ParticipantError;
use crate::trainer::SEASONAL_GUARD_FILE;

/// What computed a personal forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersonalSource {
    FineTuned,
    /// The guard's fallback: the value one season back plus the validated offsets.
    SeasonalNaive(Season),
}

/// The site's fine-tuned model, ready to forecast.
pub struct PersonalModel {
    model: ServingModel,
    guard: Option<GuardDecision>,
    /// The site normalization the model was fine-tuned with: served with it, the model sees
    /// exactly the features it was trained on.
    normalization: datasets::Normalization,
    pub artifact_metrics: std::collections::BTreeMap<String, f64>,
}

fn corrupt(dir: &Path, why: impl std::fmt::Display) -> ParticipantError {
    ParticipantError::Config(format!("personalized_model_dir {}: {why}", dir.display()))
}

impl PersonalModel {
    /// Loads the artifact under `dir`, served with the covariates `series` carries (the ones
    /// the site trained with: samples take every covariate the site's data have).
    pub fn load(dir: &Path, series: &RegularSeries) -> Result<Self, ParticipantError> {
        if !dir.join(models::artifact::MANIFEST_FILE).exists() {
            return Err(ParticipantError::Config(format!(
                "personalized_model_dir {} holds no fine-tuned model yet: the daemon writes it \
                 after its federation's last round",
                dir.display()
            )));
        }
        let artifact = ModelArtifact::load(dir).map_err(|e| corrupt(dir, e))?;
        let covariates = Covariate::present_in([&series.telemetry]);
        let model = ServingModel::from_artifact(&artifact, covariates)
            .map_err(|e| corrupt(dir, format!("does not fit this site's data: {e}")))?;
        let normalization = artifact
            .manifest()
            .normalizations
            .iter()
            .find(|n| n.site_id == series.telemetry.site_id)
            .map(|n| datasets::Normalization {
                offset_kw: n.offset_kw,
                scale_kw: n.scale_kw,
            })
            .ok_or_else(|| {
                corrupt(
                    dir,
                    format!(
                        "was fine-tuned for another site, not `{}`",
                        series.telemetry.site_id
                    ),
                )
            })?;
        let guard_path = dir.join(SEASONAL_GUARD_FILE);
        let guard = match std::fs::read(&guard_path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<GuardDecision>(&bytes)
                    .map_err(|e| corrupt(dir, format!("{SEASONAL_GUARD_FILE}: {e}")))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ParticipantError::Io {
                    path: guard_path,
                    source,
                });
            }
        };
        Ok(Self {
            model,
            guard,
            normalization,
            artifact_metrics: artifact.manifest().metrics.clone(),
        })
    }

    pub fn target(&self) -> Target {
        self.model.spec().target
    }

    pub fn model(&self) -> &ServingModel {
        &self.model
    }

    pub fn guard(&self) -> Option<&GuardDecision> {
        self.guard.as_ref()
    }

    /// `horizon_steps` steps from `at_unix_s` (default: the step after the last observation).
    pub fn forecast(
        &self,
        series: &RegularSeries,
        site: &SiteMetadata,
        at_unix_s: Option<i64>,
        horizon_steps: usize,
    ) -> Result<(QuantileForecast, PersonalSource), ParticipantError> {
        let (origin, mut request) = crate::production::site_request(
            self.model.spec(),
            series,
            site,
            at_unix_s,
            horizon_steps,
        )?;
        request.site_normalization = Some(self.normalization);
        let learned = self
            .model
            .forecast(&request)
            .map_err(crate::production::serving)?;
        match self.guard.as_ref().map(|g| g.choice) {
            Some(SiteChoice::SeasonalNaive(season)) => {
                let naive = self.seasonal_naive(series, origin, &learned, season)?;
                Ok((naive, PersonalSource::SeasonalNaive(season)))
            }
            _ => Ok((learned, PersonalSource::FineTuned)),
        }
    }

    /// The guard's fallback on the learned forecast's grid and levels.
    fn seasonal_naive(
        &self,
        series: &RegularSeries,
        origin: usize,
        learned: &QuantileForecast,
        season: Season,
    ) -> Result<QuantileForecast, ParticipantError> {
        let guard = self
            .guard
            .as_ref()
            .ok_or_else(|| ParticipantError::Forecast("no seasonal guard decision".into()))?;
        if guard.naive_offsets.len() != learned.levels.len() {
            return Err(ParticipantError::Forecast(format!(
                "the seasonal guard has {} offsets for {} quantile levels",
                guard.naive_offsets.len(),
                learned.levels.len()
            )));
        }
        let target = self.target();
        let values = target.values(&series.telemetry).ok_or_else(|| {
            ParticipantError::Forecast(format!("the site does not measure {}", target.as_str()))
        })?;
        let step_s = series.resolution.seconds();
        let lag = usize::try_from(season.seconds() / step_s).unwrap_or(usize::MAX);
        let steps = learned.timestamps_unix_s.len();
        let mut values_kw = vec![Vec::with_capacity(steps); learned.levels.len()];
        for h in 0..steps {
            // A step whose season-ago value is itself in the forecast window (a horizon
            // longer than the season) repeats the naive forecast made for it.
            let mut back = origin + h;
            let point = loop {
                back = back.checked_sub(lag).ok_or_else(|| {
                    ParticipantError::Forecast("not a season of history before the origin".into())
                })?;
                if back < origin {
                    break values.get(back).copied().flatten();
                }
            };
            let point = point.ok_or_else(|| {
                ParticipantError::Forecast(format!(
                    "seasonal naive needs the value one {} before step {h}, which is missing",
                    match season {
                        Season::Day => "day",
                        Season::Week => "week",
                    }
                ))
            })?;
            for (level, offset) in guard.naive_offsets.iter().enumerate() {
                let mut kw = point as f32 + offset * self.normalization.scale_kw;
                if target == Target::Pv {
                    kw = kw.max(0.0);
                }
                values_kw[level].push(kw);
            }
        }
        Ok(QuantileForecast {
            timestamps_unix_s: learned.timestamps_unix_s.clone(),
            levels: learned.levels.clone(),
            values_kw,
        })
    }
}
