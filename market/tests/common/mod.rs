//! A small synthetic microgrid for the market tests: homes with a daily load shape, half with
//! PV, and forecast sources of known quality.

#![allow(dead_code)]

use market::{AgentSeries, DayForecast, ForecastSource, HOURS, MarketInputs, MeteredDay};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn load_shape(h: usize) -> f64 {
    let h = h as f64;
    0.6 + 0.5 * (-(h - 8.0).powi(2) / 6.0).exp() + 1.2 * (-(h - 19.0).powi(2) / 8.0).exp()
}

fn pv_shape(h: usize) -> f64 {
    let h = h as f64;
    if (6.0..=18.0).contains(&h) {
        (std::f64::consts::PI * (h - 6.0) / 12.0).sin().powi(2)
    } else {
        0.0
    }
}

/// `agents` homes over `days` days (plus one day of history for persistence).
pub fn microgrid(agents: usize, days: usize, seed: u64) -> MarketInputs {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut series = Vec::new();
    let mut history = Vec::new();
    for a in 0..agents {
        let size = rng.random_range(0.5..2.0);
        let pv = if a % 2 == 0 {
            rng.random_range(2.0..5.0)
        } else {
            0.0
        };
        let mut all = Vec::new();
        for _ in 0..=days {
            let cloud = rng.random_range(0.3..1.0);
            all.push(MeteredDay {
                load_kw: (0..HOURS)
                    .map(|h| size * load_shape(h) * rng.random_range(0.7..1.3))
                    .collect(),
                pv_kw: (0..HOURS).map(|h| pv * cloud * pv_shape(h)).collect(),
            });
        }
        history.push(all[0].clone());
        series.push(AgentSeries {
            name: format!("site-{a:02}"),
            days: all.into_iter().skip(1).map(Some).collect(),
        });
    }
    // A good forecast: the truth blurred a little, with a p10-p90 band.
    let noisy = |spread: f64, seed: u64| {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        ForecastSource {
            name: format!("model ({spread})"),
            forecasts: series
                .iter()
                .map(|s| {
                    s.days
                        .iter()
                        .map(|d| {
                            let d = d.as_ref()?;
                            let p50: Vec<f64> = (0..HOURS)
                                .map(|h| d.net_kw(h) + spread * rng.random_range(-1.0..1.0))
                                .collect();
                            Some(DayForecast {
                                quantiles: vec![0.1, 0.5, 0.9],
                                values: vec![
                                    p50.iter().map(|v| v - spread).collect(),
                                    p50.clone(),
                                    p50.iter().map(|v| v + spread).collect(),
                                ],
                            })
                        })
                        .collect()
                })
                .collect(),
        }
    };
    // Persistence: yesterday's net load.
    let persistence = ForecastSource {
        name: "persistence".into(),
        forecasts: series
            .iter()
            .zip(&history)
            .map(|(s, first)| {
                let mut previous = first.clone();
                s.days
                    .iter()
                    .map(|d| {
                        let d = d.as_ref()?;
                        let f =
                            DayForecast::point((0..HOURS).map(|h| previous.net_kw(h)).collect());
                        previous = d.clone();
                        Some(f)
                    })
                    .collect()
            })
            .collect(),
    };
    let model = noisy(0.3, seed + 1);
    MarketInputs {
        day_starts: (0..days as i64)
            .map(|d| 1_700_000_000 + 86_400 * d)
            .collect(),
        agents: series,
        sources: vec![persistence, model],
        fallback: Some(0),
    }
}
