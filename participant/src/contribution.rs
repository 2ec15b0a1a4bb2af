//! What a site contributes to a round: its clipped training update, or (an evaluation round)
//! its holdout scores, with the weight it claims. Both travel through the same protection.

use models::HoldoutScores;
use proto::v1 as pb;

use crate::ParticipantError;
use crate::trainer::LocalResult;

/// A vector to protect and upload, and its aggregation weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    pub values: Vec<f32>,
    pub weight: u32,
}

/// True when the task asks for a federated evaluation instead of training.
pub fn is_evaluation(task: &pb::TrainTask) -> bool {
    task.purpose == pb::RoundPurpose::Evaluate as i32
}

/// How many values the round aggregates per participant.
pub fn vector_len(task: &pb::TrainTask) -> Result<usize, ParticipantError> {
    if is_evaluation(task) {
        return Ok(models::holdout::SCORE_SLOTS);
    }
    task.global
        .as_ref()
        .map(|g| g.length as usize)
        .ok_or_else(|| ParticipantError::Protocol("round task without weights".into()))
}

/// The update of a local training run: `local - global`, clipped, with its sample count
/// capped at the round's `max_weight`.
pub fn from_training(
    result: LocalResult,
    global: &[f32],
    clip: f32,
    max_weight: u32,
) -> Result<Contribution, ParticipantError> {
    if result.params.len() != global.len() {
        return Err(ParticipantError::Protocol(format!(
            "trained {} parameters, the global model has {}",
            result.params.len(),
            global.len()
        )));
    }
    if result.params.iter().any(|v| !v.is_finite()) {
        return Err(ParticipantError::Protocol(
            "local training diverged (non-finite parameters)".into(),
        ));
    }
    Ok(Contribution {
        values: crate::trainer::clipped_update(&result.params, global, clip),
        weight: result.samples.clamp(1, u64::from(max_weight.max(1))) as u32,
    })
}

/// The score vector of an evaluation, or (`None`: the site could not score) an abstention.
pub fn from_scores(
    scores: Option<&HoldoutScores>,
    clip: f32,
    max_weight: u32,
) -> Result<Contribution, ParticipantError> {
    check_score_encoding(clip, max_weight)?;
    let (values, weight) = match scores {
        Some(scores) => scores.to_shared(),
        None => models::holdout::abstention(),
    };
    Ok(Contribution { values, weight })
}

/// The round's `clip` and `max_weight` must be the ones `models::holdout` defines: a
/// coordinator asking for others would get clamped or refused values, so the mismatch is
/// refused here, before anything is sent.
fn check_score_encoding(clip: f32, max_weight: u32) -> Result<(), ParticipantError> {
    if clip != models::holdout::SCORE_CLIP || max_weight != models::holdout::MAX_SCORE_WEIGHT {
        return Err(ParticipantError::Protocol(format!(
            "evaluation round with clip {clip} and max_weight {max_weight}; scores are encoded \
             with clip {} and max_weight {}",
            models::holdout::SCORE_CLIP,
            models::holdout::MAX_SCORE_WEIGHT
        )));
    }
    Ok(())
}
