//! `gridfed demo --epsilon 1,4,8`: the accuracy cost of site-level differential privacy. For
//! each target epsilon the noise multiplier is calibrated for the demo's rounds (every site in
//! every round, delta 1e-5 by default), the MLP is trained again over the same loopback
//! federation with clipping and distributed noise, and its global and fine-tuned forecasts are
//! scored beside the non-private ones.

use anyhow::{Context, Result};
use coordinator::Protection;
use coordinator::config::DpSpec;
use datasets::{SplitSpec, Target};
use models::{EvaluationRow, ForecasterConfig, ModelKind};
use serde::Serialize;

use super::demo::{DemoArgs, demo_plan, median_site_nmae, score, site_nmae, wins_over};
use super::federated::{FederatedPlan, federated_forecasts, round_progress};
use super::fleet::GriddedFleet;
use super::train::{Format, prepared_sets};

/// The federated MLP of one target trained under `(epsilon, delta)`-DP.
#[derive(Clone, Debug, Serialize)]
pub struct PrivacyRow {
    pub target: Target,
    pub epsilon: f64,
    pub delta: f64,
    pub noise_multiplier: f64,
    pub clip_l2: f32,
    /// Epsilon actually spent by the rounds run (at most `epsilon`).
    pub epsilon_spent: f64,
    pub federated_nmae: f64,
    pub fine_tuned_nmae: f64,
    pub median_site_fine_tuned_nmae: f64,
    /// Sites where the private fine-tuned model beats the site's local-only model.
    pub fine_tuned_wins: usize,
    pub sites: usize,
}

/// Trains and scores one private federation per epsilon in `epsilons` (infinite ones skipped:
/// the demo's own rows are the non-private reference). `local_sites` are the local-only MLP's
/// per-site rows, for the win count.
pub fn sweep(
    fleet: &GriddedFleet,
    target: Target,
    split: SplitSpec,
    args: &DemoArgs,
    protection: Protection,
    local_sites: &[&EvaluationRow],
) -> Result<Vec<PrivacyRow>> {
    let (prepared, _, test) = prepared_sets(fleet, target, split)?;
    let first = &prepared[0].train;
    let config =
        ForecasterConfig::day_ahead(target, first.n_features, first.horizon).with_seed(args.seed);
    let mut rows = Vec::new();
    for &epsilon in args.epsilon.iter().filter(|e| e.is_finite()) {
        let rounds = args.rounds as u64;
        let noise_multiplier =
            crypto::dp::noise_multiplier_for(epsilon, args.dp_delta, 1.0, rounds).with_context(
                || format!("no noise multiplier reaches epsilon {epsilon} in {rounds} rounds"),
            )?;
        let dp = DpSpec {
            noise_multiplier,
            clip_l2: args.dp_clip,
            delta: args.dp_delta,
            max_epsilon: Some(epsilon),
        };
        // Evaluation rounds are left out: their scores would be released without DP noise.
        let plan = FederatedPlan {
            evaluate: None,
            dp: Some(dp),
            ..demo_plan(args, target, protection)
        };
        let progress = round_progress(format!("{target:?} at epsilon {epsilon}"));
        let show = args.format == Format::Table;
        let forecasts = federated_forecasts(&prepared, &test, &config, &plan, |done, all| {
            if show {
                progress(done, all);
            }
        })?;
        let global = score(ModelKind::FederatedMlp, target, &test, &forecasts.global)?;
        let tuned = score(
            ModelKind::FederatedFineTuned,
            target,
            &test,
            &forecasts.tuned,
        )?;
        let fine_tuned_wins = wins_over(&tuned.sites, local_sites);
        let mut spent = crypto::dp::RdpAccountant::default();
        spent.compose(1.0, noise_multiplier, forecasts.outcome.rounds.len() as u64);
        rows.push(PrivacyRow {
            target,
            epsilon,
            delta: args.dp_delta,
            noise_multiplier,
            clip_l2: args.dp_clip,
            epsilon_spent: spent.epsilon(args.dp_delta).0,
            federated_nmae: site_nmae(&global.pooled),
            fine_tuned_nmae: site_nmae(&tuned.pooled),
            median_site_fine_tuned_nmae: median_site_nmae(tuned.sites.iter()),
            fine_tuned_wins,
            sites: tuned.sites.len(),
        });
    }
    Ok(rows)
}

/// The DP rows of one target under the non-private reference.
pub fn render(
    rows: &[PrivacyRow],
    reference: (f64, f64, f64),
    local_median: f64,
    rounds: usize,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let Some(first) = rows.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "  site-level differential privacy ({} rounds, every site each round, delta {:e}, L2 clip {}, distributed discrete Gaussian noise):",
        rounds, first.delta, first.clip_l2
    );
    let _ = writeln!(
        out,
        "    {:>8} {:>11} {:>15} {:>16} {:>20} {:>17}",
        "epsilon",
        "noise mult.",
        "federated nMAE",
        "fine-tuned nMAE",
        "median site (tuned)",
        "beats local-only"
    );
    let (fed, tuned, median) = reference;
    let _ = writeln!(
        out,
        "    {:>8} {:>11} {:>14.2}% {:>15.2}% {:>19.2}% {:>17}",
        "inf",
        "-",
        100.0 * fed,
        100.0 * tuned,
        100.0 * median,
        "-"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "    {:>8} {:>11.3} {:>14.2}% {:>15.2}% {:>19.2}% {:>13}/{}",
            r.epsilon,
            r.noise_multiplier,
            100.0 * r.federated_nmae,
            100.0 * r.fine_tuned_nmae,
            100.0 * r.median_site_fine_tuned_nmae,
            r.fine_tuned_wins,
            r.sites
        );
    }
    let _ = writeln!(
        out,
        "    (local-only MLP, median site: {:.2}%)",
        100.0 * local_median
    );
    out
}
