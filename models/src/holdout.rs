//! Federated evaluation: a site scores a model version on its own holdout and shares only a
//! short, bounded score vector, aggregated under the round's protection (masked or encrypted),
//! so the coordinator learns the fleet's scores and no single site's.
//!
//! Every score is relative to the site's own mean absolute actual value (nMAE-style), which
//! keeps the vector scale-free: it reveals nothing about a site's size and a large site does
//! not drown the others. Sites are weighted by their number of holdout forecast windows, so the
//! fleet score is the window-weighted mean of site scores ([`FleetScores`]); pooled kW scores
//! would need kW sums, which do reveal a site's size.
//!
//! A site that cannot score (no holdout yet, a model it cannot run) still answers, with an
//! abstention ([`abstention`]): weight 1 and only the abstention slot set. The fleet decoding
//! takes the abstainers' weight back out, so one site without data never stalls a round until
//! its deadline, and the coordinator learns how many sites abstained, not which.
//!
//! The vector layout, its bound and its weight cap live here, the one place both the
//! participant (encoding) and the coordinator (decoding) read them.

use datasets::{SampleSet, Target};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::baselines::persistence;
use crate::config::ForecasterConfig;
use crate::forecaster::QuantileForecaster;
use crate::metrics::{ErrorSums, StepSelection, site_errors};

/// Slots of the shared vector: nMAE, nMSE, normalized pinball, p10-p90 coverage, persistence
/// nMAE on the same steps, a saturation flag, and an abstention flag.
pub const SCORE_SLOTS: usize = 7;

const SATURATED: usize = 5;
const ABSTAINED: usize = 6;

/// Bound of every slot: the fixed-point clip of an evaluation round. A relative error above 8
/// (800%) is clamped and flagged; the fleet result then reports the flagged share.
pub const SCORE_CLIP: f32 = 8.0;

/// Cap on a site's weight (holdout windows): 1000 days of day-ahead windows. Keeping it small
/// keeps fixed-point precision high (see `crypto::fixed_point`).
pub const MAX_SCORE_WEIGHT: u32 = 1000;

/// Which steps a target is scored on: PV at night is trivially zero and would flatter any model.
pub fn scored_steps(target: Target) -> StepSelection {
    match target {
        Target::Load | Target::NetLoad => StepSelection::All,
        Target::Pv => StepSelection::Daylight,
    }
}

/// One site's scores of one model version on its holdout; never leaves the site unprotected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HoldoutScores {
    /// Holdout forecast windows scored (the site's weight, capped at [`MAX_SCORE_WEIGHT`]).
    pub windows: u32,
    pub nmae: f64,
    /// Mean squared error over the squared mean absolute actual.
    pub nmse: f64,
    /// Mean pinball loss over quantiles, relative like `nmae`.
    pub npinball: f64,
    pub coverage: f64,
    pub persistence_nmae: f64,
}

impl HoldoutScores {
    /// Scores the model `weights` (flat, as federated) on `holdout`, all of one site.
    pub fn measure(
        config: &ForecasterConfig,
        weights: &[f32],
        holdout: &SampleSet,
        target: Target,
    ) -> Result<Self, ModelError> {
        if holdout.site_ids.len() != 1 {
            return Err(ModelError::InvalidSamples(format!(
                "a holdout is one site's; got {} sites",
                holdout.site_ids.len()
            )));
        }
        let mut forecast =
            QuantileForecaster::from_flat(config.clone(), weights)?.predict(holdout)?;
        if target == Target::Pv {
            forecast.clamp_min_kw(holdout, 0.0)?;
        }
        let selection = scored_steps(target);
        let model = pooled(site_errors(holdout, &forecast, selection)?);
        let reference = pooled(site_errors(holdout, &persistence(holdout)?, selection)?);
        let m = model.metrics();
        if m.steps == 0 || !(m.nmae.is_finite() && reference.metrics().nmae.is_finite()) {
            return Err(ModelError::InvalidSamples(
                "the holdout has no scored step with a non-zero actual value".into(),
            ));
        }
        let windows = u32::try_from(holdout.origins.len())
            .unwrap_or(u32::MAX)
            .min(MAX_SCORE_WEIGHT);
        Ok(Self {
            windows,
            nmae: m.nmae,
            nmse: m.nrmse * m.nrmse,
            npinball: m.pinball_kw / model.mean_abs_actual(),
            coverage: m.coverage.unwrap_or(0.0),
            persistence_nmae: reference.metrics().nmae,
        })
    }

    /// The vector a site shares and its weight (windows, capped at [`MAX_SCORE_WEIGHT`]).
    /// Slots beyond [`SCORE_CLIP`] are clamped and the saturation slot says so.
    pub fn to_shared(&self) -> (Vec<f32>, u32) {
        let raw = [
            self.nmae,
            self.nmse,
            self.npinball,
            self.coverage,
            self.persistence_nmae,
        ];
        let bound = f64::from(SCORE_CLIP);
        let saturated = raw.iter().any(|v| !(0.0..=bound).contains(v));
        let mut vector: Vec<f32> = raw.iter().map(|v| v.clamp(0.0, bound) as f32).collect();
        vector.push(if saturated { 1.0 } else { 0.0 });
        vector.push(0.0);
        (vector, self.windows.clamp(1, MAX_SCORE_WEIGHT))
    }
}

/// What a site that cannot score sends: weight 1, only the abstention slot set.
pub fn abstention() -> (Vec<f32>, u32) {
    let mut vector = vec![0.0; SCORE_SLOTS];
    vector[ABSTAINED] = 1.0;
    (vector, 1)
}

fn pooled(sums: Vec<ErrorSums>) -> ErrorSums {
    ErrorSums::pooled(&sums)
}

/// The fleet's scores: window-weighted means of the site scores, decoded from the aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetScores {
    /// Sites behind the scores and their holdout windows (capped per site).
    pub sites: u64,
    pub windows: u64,
    /// Sites that took part but could not score (their weight is taken back out).
    #[serde(default)]
    pub abstained: u64,
    pub nmae: f64,
    /// Square root of the weighted mean nMSE.
    pub nrmse: f64,
    pub npinball: f64,
    pub coverage: f64,
    /// `1 - nmae / persistence_nmae`: the share of persistence's error the model removes.
    pub skill: Option<f64>,
    pub persistence_nmae: f64,
    /// Share of the windows whose site clamped a score at [`SCORE_CLIP`] (0 when none).
    pub saturated_share: f64,
}

impl FleetScores {
    /// Reads the weighted mean of the shared vectors of `contributions` sites with total
    /// weight `total_weight` (see [`HoldoutScores::to_shared`] and [`abstention`]).
    pub fn from_weighted_mean(
        mean: &[f32],
        total_weight: u64,
        contributions: u64,
    ) -> Result<Self, ModelError> {
        if mean.len() != SCORE_SLOTS {
            return Err(ModelError::LayoutMismatch(format!(
                "a score vector has {SCORE_SLOTS} slots, got {}",
                mean.len()
            )));
        }
        if let Some(i) = mean.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::InvalidSamples(format!(
                "score slot {i} is not finite"
            )));
        }
        // Each abstainer added weight 1 and 1 to the abstention slot's weighted sum, which the
        // fixed-point sum carries exactly (well within rounding to an integer).
        let abstained = (f64::from(mean[ABSTAINED]) * total_weight as f64).round() as u64;
        if abstained > contributions || abstained > total_weight {
            return Err(ModelError::InvalidSamples(format!(
                "{abstained} abstentions among {contributions} contributions"
            )));
        }
        let windows = total_weight - abstained;
        if windows == 0 {
            return Err(ModelError::InvalidSamples(format!(
                "none of the {contributions} sites could score its holdout"
            )));
        }
        // Means over the scoring sites' windows only; fixed-point rounding can leave a zero
        // slot a hair below zero.
        let rescale = total_weight as f64 / windows as f64;
        let slot = |i: usize| (f64::from(mean[i]) * rescale).max(0.0);
        let (nmae, persistence_nmae) = (slot(0), slot(4));
        Ok(Self {
            sites: contributions - abstained,
            windows,
            abstained,
            nmae,
            nrmse: slot(1).sqrt(),
            npinball: slot(2),
            coverage: slot(3).min(1.0),
            skill: (persistence_nmae > 0.0).then(|| 1.0 - nmae / persistence_nmae),
            persistence_nmae,
            saturated_share: slot(SATURATED).min(1.0),
        })
    }
}
