//! What a simulation runs on: each agent's metered days and each forecast source's forecasts.

use serde::{Deserialize, Serialize};

use crate::config::HOURS;
use crate::error::MarketError;
use crate::forecast::DayForecast;

/// One agent's metered day, hourly means in kW.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeteredDay {
    pub load_kw: Vec<f64>,
    /// Zero for sites without PV.
    pub pv_kw: Vec<f64>,
}

impl MeteredDay {
    pub fn net_kw(&self, hour: usize) -> f64 {
        self.load_kw[hour] - self.pv_kw[hour]
    }
}

/// One agent's telemetry over the simulated days; `None` where the site has no complete day
/// (it sits that day out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSeries {
    pub name: String,
    pub days: Vec<Option<MeteredDay>>,
}

/// One way of forecasting: `forecasts[agent][day]`, `None` where it has no forecast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastSource {
    pub name: String,
    pub forecasts: Vec<Vec<Option<DayForecast>>>,
}

impl ForecastSource {
    /// Perfect foresight: the actual net load as a point forecast.
    pub fn perfect(agents: &[AgentSeries]) -> Self {
        Self {
            name: "perfect foresight".into(),
            forecasts: agents
                .iter()
                .map(|a| {
                    a.days
                        .iter()
                        .map(|d| {
                            d.as_ref().map(|m| {
                                DayForecast::point((0..HOURS).map(|h| m.net_kw(h)).collect())
                            })
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

/// A simulation's data: `day_starts` (unix s of each day's first hour), the agents and the
/// sources to compare. `fallback` names the source an agent without forecasts bids on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketInputs {
    pub day_starts: Vec<i64>,
    pub agents: Vec<AgentSeries>,
    pub sources: Vec<ForecastSource>,
    pub fallback: Option<usize>,
}

impl MarketInputs {
    /// Checks that days, hours, agents and sources line up, naming what does not.
    pub fn validate(&self) -> Result<(), MarketError> {
        let days = self.day_starts.len();
        if days == 0 || self.agents.is_empty() {
            return Err(MarketError::Inputs(format!(
                "{days} days and {} agents: nothing to simulate",
                self.agents.len()
            )));
        }
        for agent in &self.agents {
            if agent.days.len() != days {
                return Err(MarketError::Inputs(format!(
                    "agent {} has {} days, the simulation {days}",
                    agent.name,
                    agent.days.len()
                )));
            }
            for (d, day) in agent.days.iter().enumerate() {
                let Some(m) = day else { continue };
                let finite = |v: &[f64]| v.len() == HOURS && v.iter().all(|x| x.is_finite());
                if !(finite(&m.load_kw) && finite(&m.pv_kw)) {
                    return Err(MarketError::Inputs(format!(
                        "agent {} day {d}: load and PV need {HOURS} finite hourly values",
                        agent.name
                    )));
                }
            }
        }
        for source in &self.sources {
            if source.forecasts.len() != self.agents.len() {
                return Err(MarketError::Inputs(format!(
                    "source {} forecasts {} agents of {}",
                    source.name,
                    source.forecasts.len(),
                    self.agents.len()
                )));
            }
            for (agent, per_day) in self.agents.iter().zip(&source.forecasts) {
                if per_day.len() != days {
                    return Err(MarketError::Inputs(format!(
                        "source {} has {} days for agent {}, the simulation {days}",
                        source.name,
                        per_day.len(),
                        agent.name
                    )));
                }
                for forecast in per_day.iter().flatten() {
                    forecast.validate(HOURS).map_err(|e| {
                        MarketError::Inputs(format!(
                            "source {} agent {}: {e}",
                            source.name, agent.name
                        ))
                    })?;
                }
            }
        }
        if let Some(f) = self.fallback.filter(|&f| f >= self.sources.len()) {
            return Err(MarketError::Inputs(format!(
                "fallback source {f} of {} sources",
                self.sources.len()
            )));
        }
        Ok(())
    }
}
