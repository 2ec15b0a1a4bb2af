//! Local training behind a trait: the MLP of the `models` crate on the site's own samples, or a
//! fixed update (benchmarks measure the federation with training excluded).

use std::path::PathBuf;
use std::sync::Mutex;

use datasets::{SampleSet, Target};
use models::{ForecasterConfig, HoldoutScores, TrainingMode};

use crate::ParticipantError;

/// The training part of a round task.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSpec {
    pub round: u64,
    /// The version the round starts from (its global weights). Training schedules count in
    /// versions: round numbers also advance on evaluation, failed and aborted rounds.
    pub from_version: u64,
    pub model_spec_json: String,
    pub local_epochs: u32,
    pub learning_rate: f32,
    pub fedprox_mu: f32,
}

/// Local parameters after training and the number of samples behind them.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResult {
    pub params: Vec<f32>,
    pub samples: u64,
}

fn no_holdout(spec: &TrainSpec) -> ParticipantError {
    ParticipantError::Protocol(format!(
        "round {}: this site has no holdout to evaluate on",
        spec.round
    ))
}

/// Trains locally from the global weights.
pub trait LocalTrainer: Send + Sync + 'static {
    fn train(&self, spec: &TrainSpec, global: &[f32]) -> Result<LocalResult, ParticipantError>;

    /// Scores `weights` (a version of the federation's model) on the site's own holdout for a
    /// federated evaluation round. Only the scores leave, protected like updates.
    fn evaluate(
        &self,
        spec: &TrainSpec,
        _weights: &[f32],
    ) -> Result<HoldoutScores, ParticipantError> {
        Err(no_holdout(spec))
    }

    /// Refuses, at join, a federation whose model this site cannot train (another input width
    /// or horizon than the site's data gives): a configuration error that stops the daemon
    /// with its reason, instead of a round abandoned on the site every time while the
    /// coordinator waits for its upload. `model_spec_json` is the `JoinResponse`'s (empty for
    /// federations that carry none).
    fn check_model(
        &self,
        _federation: &str,
        _model_spec_json: &str,
    ) -> Result<(), ParticipantError> {
        Ok(())
    }

    /// Called once with the federation's final weights (downloaded and digest-checked), e.g. to
    /// personalize them on the site's own data. Nothing it does leaves the site.
    fn finish(&self, _final_weights: &[f32]) -> Result<(), ParticipantError> {
        Ok(())
    }
}

/// Where the personalized model goes and what it forecasts.
struct Personalization {
    dir: PathBuf,
    target: Target,
}

/// The quantile MLP of `models`, trained on this site's training samples only.
pub struct MlpTrainer {
    samples: SampleSet,
    /// The site's held-out (latest) samples and target, for federated evaluation.
    holdout: Option<(SampleSet, Target)>,
    personalization: Option<Personalization>,
    /// The model spec of the latest round (the final weights' architecture).
    last_config: Mutex<Option<ForecasterConfig>>,
}

impl MlpTrainer {
    pub fn new(samples: SampleSet) -> Self {
        Self {
            samples,
            holdout: None,
            personalization: None,
            last_config: Mutex::new(None),
        }
    }

    /// After the last round, fine-tune the final global model on this site's samples
    /// ([`models::fine_tune`]: early stopping on the site's own validation days, the global
    /// weights kept if nothing improves) and save it as a model artifact under `dir`.
    pub fn with_personalization(mut self, dir: PathBuf, target: Target) -> Self {
        self.personalization = Some(Personalization { dir, target });
        self
    }

    /// Scores federated versions on `holdout` (the site's latest samples, never trained on).
    pub fn with_holdout(mut self, holdout: SampleSet, target: Target) -> Self {
        self.holdout = Some((holdout, target));
        self
    }

    pub fn samples(&self) -> &SampleSet {
        &self.samples
    }
}

fn model_config(spec: &TrainSpec) -> Result<ForecasterConfig, ParticipantError> {
    serde_json::from_str(&spec.model_spec_json)
        .map_err(|e| ParticipantError::Protocol(format!("model spec of round {}: {e}", spec.round)))
}

impl LocalTrainer for MlpTrainer {
    fn check_model(&self, federation: &str, model_spec_json: &str) -> Result<(), ParticipantError> {
        if model_spec_json.trim().is_empty() {
            return Ok(());
        }
        let config: ForecasterConfig = serde_json::from_str(model_spec_json).map_err(|e| {
            ParticipantError::Protocol(format!("model spec of federation `{federation}`: {e}"))
        })?;
        let s = &self.samples;
        if config.n_features == s.n_features && config.horizon == s.horizon {
            // A daemon (re)started after the federation's last round trains nothing here but
            // still fine-tunes the final model: it does so with the spec it joined.
            if let Ok(mut last) = self.last_config.lock()
                && last.is_none()
            {
                *last = Some(config);
            }
            return Ok(());
        }
        Err(ParticipantError::Config(format!(
            "federation `{federation}` trains a model of {} input features and {} horizon \
             steps, but this site's data gives {} features ({} context and {} horizon steps): \
             set [data] context and horizon in participant.toml to the published model's \
             (`gridfed models show`); not joining",
            config.n_features, config.horizon, s.n_features, s.context, s.horizon
        )))
    }

    fn train(&self, spec: &TrainSpec, global: &[f32]) -> Result<LocalResult, ParticipantError> {
        let mut config = model_config(spec)?;
        // Fine-tuning later uses the model spec's own hyperparameters, not this round's.
        if let Ok(mut last) = self.last_config.lock() {
            *last = Some(config.clone());
        }
        config.learning_rate = f64::from(spec.learning_rate);
        config.proximal_mu = spec.fedprox_mu;
        // A different shuffle per version step, the same for a given step (reproducible runs
        // whatever evaluation or failed rounds came in between).
        config.seed = config.seed.wrapping_add(spec.from_version + 1);
        let update = models::train_local(
            &config,
            global,
            &self.samples,
            spec.local_epochs.max(1) as usize,
        )?;
        Ok(LocalResult {
            params: update.params,
            samples: update.samples as u64,
        })
    }

    fn evaluate(
        &self,
        spec: &TrainSpec,
        weights: &[f32],
    ) -> Result<HoldoutScores, ParticipantError> {
        let Some((holdout, target)) = &self.holdout else {
            return Err(no_holdout(spec));
        };
        Ok(HoldoutScores::measure(
            &model_config(spec)?,
            weights,
            holdout,
            *target,
        )?)
    }

    fn finish(&self, final_weights: &[f32]) -> Result<(), ParticipantError> {
        let Some(personal) = &self.personalization else {
            return Ok(());
        };
        let config = self
            .last_config
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| {
                ParticipantError::Protocol(
                    "no round was trained here, so the final model's spec is unknown".into(),
                )
            })?;
        let tuned = models::fine_tune(&config, final_weights, &self.samples)?;
        // The site's seasonal guard: would "same hour yesterday / last week" have beaten the
        // tuned model on its own validation days? Recorded with the artifact, so whoever
        // serves it from this site knows whether to fall back (models::guard).
        let guard = models::guard_site(
            &self.samples,
            config.validation_fraction,
            &config.quantiles,
            |d| tuned.forecaster.predict(d),
        )?;
        let metrics = [
            (
                "seasonal_guard_fallback".to_string(),
                if guard.fell_back() { 1.0 } else { 0.0 },
            ),
            (
                "guard_validation_mae_learned".to_string(),
                guard.learned_mae,
            ),
            ("guard_validation_mae_naive".to_string(), guard.naive_mae),
            (
                "best_validation_loss".to_string(),
                f64::from(tuned.report.best_validation_loss),
            ),
            (
                "fine_tune_epochs".to_string(),
                tuned.report.best_epoch as f64,
            ),
        ]
        .into();
        models::ModelArtifact::from_trained(
            &tuned,
            personal.target,
            &self.samples,
            TrainingMode::Federated,
            metrics,
        )?
        .save(&personal.dir)?;
        let decision = serde_json::to_vec_pretty(&guard)
            .map_err(|e| ParticipantError::Protocol(format!("seasonal guard decision: {e}")))?;
        let path = personal.dir.join(SEASONAL_GUARD_FILE);
        std::fs::write(&path, decision).map_err(|source| ParticipantError::Io { path, source })?;
        Ok(())
    }
}

/// The personalized model's seasonal guard decision, beside its artifact.
pub const SEASONAL_GUARD_FILE: &str = "seasonal_guard.json";

/// Returns `global + delta` with a fixed sample count: the federation's cost without training.
pub struct FixedUpdate {
    pub delta: Vec<f32>,
    pub samples: u64,
}

impl LocalTrainer for FixedUpdate {
    fn train(&self, _spec: &TrainSpec, global: &[f32]) -> Result<LocalResult, ParticipantError> {
        if global.len() != self.delta.len() {
            return Err(ParticipantError::Protocol(format!(
                "fixed update has {} values, the model {}",
                self.delta.len(),
                global.len()
            )));
        }
        Ok(LocalResult {
            params: global.iter().zip(&self.delta).map(|(g, d)| g + d).collect(),
            samples: self.samples,
        })
    }
}

/// The update a participant shares: `local - global`, each coordinate clipped to `[-clip, clip]`.
pub fn clipped_update(local: &[f32], global: &[f32], clip: f32) -> Vec<f32> {
    local
        .iter()
        .zip(global)
        .map(|(l, g)| (l - g).clamp(-clip, clip))
        .collect()
}
