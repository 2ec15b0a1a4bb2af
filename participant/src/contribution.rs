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

/// The differential privacy a round asks of this site: the noise multiplier and the fewest
/// contributions its noise shares must cover (`None` without DP).
pub fn round_dp(task: &pb::TrainTask) -> Option<RoundDp> {
    (task.dp_noise_multiplier > 0.0 && !is_evaluation(task)).then(|| RoundDp {
        noise_multiplier: task.dp_noise_multiplier,
        min_contributors: task.dp_min_contributors.max(1),
    })
}

/// See [`round_dp`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundDp {
    pub noise_multiplier: f64,
    pub min_contributors: u32,
}

impl RoundDp {
    /// Units of headroom the round's fixed-point codec keeps for the noise.
    pub fn headroom(self) -> u32 {
        crypto::dp::headroom_units(self.noise_multiplier)
    }

    /// Adds this site's noise share to the value words (not the weight slot) of `words`.
    pub fn add_noise(
        self,
        codec: &crypto::FixedPointCodec,
        words: &mut [u32],
        values: usize,
    ) -> Result<(), ParticipantError> {
        let shares =
            crypto::dp::round_noise(codec, values, self.noise_multiplier, self.min_contributors)
                .map_err(|e| ParticipantError::Crypto(e.to_string()))?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| ParticipantError::Crypto(format!("OS RNG: {e}")))?;
        let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_seed(seed);
        let end = values.min(words.len());
        shares.add_share(&mut words[..end], &mut rng);
        Ok(())
    }
}

/// The update of a local training run: `local - global`, clipped, with its sample count
/// capped at the round's `max_weight`. In a DP round the whole update is clipped to L2 norm
/// `clip` and every site weighs 1.
pub fn from_training(
    result: LocalResult,
    global: &[f32],
    clip: f32,
    max_weight: u32,
    dp: Option<RoundDp>,
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
    if dp.is_some() {
        let mut values: Vec<f32> = result
            .params
            .iter()
            .zip(global)
            .map(|(local, global)| local - global)
            .collect();
        crypto::dp::clip_l2(&mut values, clip)
            .map_err(|e| ParticipantError::Protocol(format!("update: {e}")))?;
        // f32 rounding of the scaled values may land a hair outside the bound.
        values.iter_mut().for_each(|v| *v = v.clamp(-clip, clip));
        return Ok(Contribution { values, weight: 1 });
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
