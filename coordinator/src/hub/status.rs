//! What each federation is doing now, for people (the dashboard) rather than for the rounds.

use super::{Hub, RoundState};

/// One federation at a glance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationStatus {
    pub name: String,
    pub tag: String,
    pub protection: &'static str,
    pub rounds_planned: u64,
    /// The latest committed version (0: the initial weights).
    pub latest_version: u64,
    /// Enrolled participants that joined it.
    pub members: usize,
    /// `idle`, `done`, or the phase of the round in flight.
    pub phase: &'static str,
    /// The round in flight, with how many were selected and when it began.
    pub round: Option<RoundInFlight>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundInFlight {
    pub number: u64,
    pub selected: usize,
    pub started_unix_ms: u64,
}

impl Hub {
    /// Every federation's status, by name.
    pub fn federation_status(&self) -> Vec<FederationStatus> {
        self.federations
            .iter()
            .map(|(name, f)| {
                let plan = match &f.round {
                    RoundState::Plain(c) => Some(c.plan()),
                    RoundState::Masked(m) => Some(m.plan()),
                    RoundState::Encrypted(e) => Some(e.plan()),
                    RoundState::Idle { .. } | RoundState::Done => None,
                };
                FederationStatus {
                    name: name.clone(),
                    tag: f.spec.tag.clone(),
                    protection: f.spec.protection.name(),
                    rounds_planned: f.spec.rounds,
                    latest_version: f.latest.version,
                    members: f.members.len(),
                    phase: f.round.name(),
                    round: plan.map(|p| RoundInFlight {
                        number: p.round,
                        selected: p.selected.len(),
                        started_unix_ms: p.started_unix_ms,
                    }),
                }
            })
            .collect()
    }
}
