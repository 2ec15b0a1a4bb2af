//! Text rendering of evaluation reports (the JSON form is serde's).

use std::fmt::Write;

use datasets::SkippedSite;
use models::{EvaluationReport, EvaluationRow, GuardDecision, SiteChoice};

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// One table line per row: model, MAE, nMAE, pinball, coverage, skill, daylight nMAE.
fn row_line(out: &mut String, label: &str, row: &EvaluationRow) {
    let m = &row.metrics;
    let _ = writeln!(
        out,
        "  {label:<32} {:>10.3} {:>8} {:>10.3} {:>9} {:>7} {:>10}",
        m.mae_kw,
        percent(Some(m.nmae)),
        m.pinball_kw,
        percent(m.coverage),
        percent(Some(row.skill)),
        percent(row.daylight.map(|d| d.nmae)),
    );
}

fn header(out: &mut String, title: &str) {
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "  {:<32} {:>10} {:>8} {:>10} {:>9} {:>7} {:>10}",
        "model", "MAE kW", "nMAE", "pinball", "p10-p90", "skill", "day nMAE"
    );
}

/// The report as a table: per site (when `per_site`), then the pooled fleet.
pub fn render(report: &EvaluationReport, per_site: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "target {:?}, mode {:?}: {} sites, {} train / {} test samples, context {} x {} s, horizon {}",
        report.target,
        report.mode,
        report.sites,
        report.train_samples,
        report.test_samples,
        report.context,
        report.step_seconds,
        report.horizon
    );
    if per_site {
        let mut sites: Vec<&str> = Vec::new();
        for site in report.rows.iter().filter_map(|r| r.site.as_deref()) {
            if !sites.contains(&site) {
                sites.push(site);
            }
        }
        for site in sites {
            header(&mut out, &format!("site {site}"));
            for row in report
                .rows
                .iter()
                .filter(|r| r.site.as_deref() == Some(site))
            {
                row_line(&mut out, row.model.name(), row);
            }
        }
    }
    header(&mut out, "fleet (pooled)");
    for row in report.rows.iter().filter(|r| r.site.is_none()) {
        row_line(&mut out, row.model.name(), row);
    }
    for skipped in &report.skipped {
        let _ = writeln!(out, "  (skipped: {skipped})");
    }
    render_guard(&mut out, &report.guard);
    render_skipped_sites(&mut out, &report.skipped_sites);
    out
}

/// Which sites' MLP rows fell back to a seasonal naive forecast, and why.
pub fn render_guard(out: &mut String, decisions: &[GuardDecision]) {
    let fell_back: Vec<String> = decisions
        .iter()
        .filter_map(|d| match d.choice {
            SiteChoice::Learned => None,
            SiteChoice::SeasonalNaive(season) => Some(format!(
                "{} ({season:?}: validation MAE {:.3} vs MLP {:.3})",
                d.site_id, d.naive_mae, d.learned_mae
            )),
        })
        .collect();
    let _ = writeln!(
        out,
        "  seasonal guard: the MLP is kept on {} of {} sites{}",
        decisions.len() - fell_back.len(),
        decisions.len(),
        if fell_back.is_empty() {
            String::new()
        } else {
            format!("; seasonal naive on {}", fell_back.join(", "))
        }
    );
}

/// One line per site left out of a report, with its reason.
pub fn render_skipped_sites(out: &mut String, skipped: &[SkippedSite]) {
    if skipped.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {} site(s) skipped:", skipped.len());
    for site in skipped {
        let _ = writeln!(out, "    {}: {}", site.site_id, site.reason);
    }
}

/// A comparison table of labelled pooled rows (used by the demo).
pub fn render_comparison(title: &str, rows: &[(String, &EvaluationRow)]) -> String {
    let mut out = String::new();
    header(&mut out, title);
    for (label, row) in rows {
        row_line(&mut out, label, row);
    }
    out
}
