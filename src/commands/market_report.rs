//! The tables of `gridfed simulate market`: one comparison per scenario and, with `--scenario
//! all`, imbalance cost by scenario.

use market::{ClearingMode, MarketInputs, MarketReport, Scenario};

/// Imbalance cost of every source under every scenario, and the change from calm days.
pub fn render_scenarios(reports: &[MarketReport]) -> String {
    use std::fmt::Write;
    let mut out = String::from("\nimbalance cost by scenario (change from `none`)\n");
    let _ = write!(out, "{:<26}", "forecast source");
    for r in reports {
        let _ = write!(out, " {:>20}", r.scenario.name());
    }
    out.push('\n');
    let calm = reports.iter().find(|r| r.scenario == Scenario::None);
    for (i, source) in reports[0].sources.iter().enumerate() {
        let _ = write!(out, "{:<26}", source.source);
        for r in reports {
            let cost = r.sources[i].imbalance_cost;
            let change = calm
                .map(|c| c.sources[i].imbalance_cost)
                .filter(|&c| c > 1.0 && r.scenario != Scenario::None)
                .map_or(String::new(), |c| {
                    format!(" ({:+.0}%)", 100.0 * (cost / c - 1.0))
                });
            let _ = write!(out, " {:>20}", format!("{cost:.0}{change}"));
        }
        out.push('\n');
    }
    out
}

/// The comparison table.
pub fn render(report: &MarketReport, inputs: &MarketInputs) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nmicrogrid market: {} agents ({} with batteries), {} days, scenario {}, {} clearing",
        report.agents.len(),
        report.battery_agents,
        report.days,
        report.scenario.name(),
        match report.mode {
            ClearingMode::Plain => "plain",
            ClearingMode::Private => "private (SecAgg+)",
        }
    );
    let _ = writeln!(
        out,
        "{:<26} {:>10} {:>9} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9}",
        "forecast source",
        "imbalance",
        "|imb| kWh",
        "total cost",
        "bought",
        "sold",
        "price",
        "surplus",
        "local PV",
        "CVaR95/d"
    );
    for s in &report.sources {
        let _ = writeln!(
            out,
            "{:<26} {:>10.2} {:>9.1} {:>10.2} {:>9.1} {:>9.1} {:>8} {:>8.2} {:>7.1}% {:>9.2}",
            s.source,
            s.imbalance_cost,
            s.imbalance_kwh,
            s.total_cost,
            s.bought_kwh,
            s.sold_kwh,
            s.mean_clearing_price
                .map_or("-".into(), |p| format!("{p:.3}")),
            s.surplus,
            100.0 * s.pv_consumed_locally,
            s.cvar95_daily_imbalance_cost
        );
    }
    let by_name = |n: &str| report.sources.iter().find(|s| s.source == n);
    if let (Some(tuned), Some(p), Some(l)) = (
        by_name("federated + fine-tuned"),
        by_name("persistence"),
        by_name("local-only MLP"),
    ) {
        let _ = writeln!(
            out,
            "  federated + fine-tuned imbalance cost: {:+.1}% vs persistence, {:+.1}% vs local-only",
            100.0 * (tuned.imbalance_cost / p.imbalance_cost - 1.0),
            100.0 * (tuned.imbalance_cost / l.imbalance_cost - 1.0)
        );
    }
    if let Some(private) = &report.private {
        let t = &private.timings;
        let _ = writeln!(
            out,
            "  private clearing: {} rounds, {} differing from plain; per round: setup {:.0} ms, one agent masking {:.1} ms, unmasking {:.1} ms",
            private.rounds,
            private.mismatches,
            t.setup.as_secs_f64() * 1e3 / private.rounds as f64,
            t.single_masking.as_secs_f64() * 1e3 / private.rounds as f64,
            t.unmasking.as_secs_f64() * 1e3 / private.rounds as f64
        );
    }
    let _ = writeln!(
        out,
        "  costs in currency units over all agents and days; imbalance = short x (short price - import) + long x (feed-in - long price); {} days from {}",
        inputs.day_starts.len(),
        inputs.day_starts.first().copied().unwrap_or(0)
    );
    out
}
