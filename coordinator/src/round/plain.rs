//! Plaintext FedAvg collection (testing only: the coordinator sees every update).

use std::collections::BTreeSet;

use super::{Aggregated, RoundError, RoundPlan};

/// Collecting plaintext updates. Each accepted update is folded into a running weighted sum,
/// so memory stays at one vector however many participants contribute.
#[derive(Debug)]
pub struct PlainCollecting {
    plan: RoundPlan,
    weighted_sum: Vec<f64>,
    total_weight: u64,
    contributors: BTreeSet<String>,
}

impl PlainCollecting {
    pub fn new(plan: RoundPlan) -> Self {
        let len = plan.vector_len() as usize;
        Self {
            plan,
            weighted_sum: vec![0.0; len],
            total_weight: 0,
            contributors: BTreeSet::new(),
        }
    }

    pub fn plan(&self) -> &RoundPlan {
        &self.plan
    }

    pub fn contributors(&self) -> &BTreeSet<String> {
        &self.contributors
    }

    /// Checks an update's envelope before its bytes are read.
    pub fn admit(&self, round: u64, participant: &str) -> Result<(), RoundError> {
        self.plan.check(round, participant)?;
        if self.contributors.contains(participant) {
            return Err(RoundError::AlreadySubmitted(participant.to_string()));
        }
        Ok(())
    }

    /// Folds in one participant's update (local - global, clipped) weighted by its sample count.
    pub fn accept(
        &mut self,
        round: u64,
        participant: &str,
        samples: u64,
        update: &[f32],
    ) -> Result<(), RoundError> {
        self.admit(round, participant)?;
        let malformed = |reason: String| RoundError::Malformed {
            participant: participant.to_string(),
            reason,
        };
        if update.len() != self.weighted_sum.len() {
            return Err(malformed(format!(
                "{} values, expected {}",
                update.len(),
                self.weighted_sum.len()
            )));
        }
        if samples == 0 || samples > u64::from(self.plan.max_weight()) {
            return Err(malformed(format!(
                "sample count {samples} outside 1..={}",
                self.plan.max_weight()
            )));
        }
        let clip = self.plan.clip();
        if let Some(i) = update.iter().position(|v| v.is_nan() || v.abs() > clip) {
            return Err(malformed(format!(
                "value {} at index {i} outside [-{clip}, {clip}]",
                update[i]
            )));
        }
        let w = samples as f64;
        for (acc, v) in self.weighted_sum.iter_mut().zip(update) {
            *acc += w * f64::from(*v);
        }
        self.total_weight += samples;
        self.contributors.insert(participant.to_string());
        Ok(())
    }

    /// True once the target number of contributions (or every selected participant) is in.
    pub fn is_complete(&self) -> bool {
        self.contributors.len() >= self.plan.target.min(self.plan.selected.len())
    }

    /// Closes collection: the weighted mean, if enough participants contributed.
    pub fn close(self) -> Result<Aggregated, RoundError> {
        let have = self.contributors.len();
        if have < self.plan.min_participants || self.total_weight == 0 {
            return Err(RoundError::TooFew {
                round: self.plan.round,
                have,
                need: self.plan.min_participants,
            });
        }
        let total = self.total_weight as f64;
        let mean_update = self
            .weighted_sum
            .iter()
            .map(|s| (s / total) as f32)
            .collect();
        Ok(Aggregated {
            plan: self.plan,
            mean_update,
            total_weight: self.total_weight,
            participants: have,
        })
    }
}
