//! Text rendering of evaluation reports (the JSON form is serde's).

use std::fmt::Write;

use models::{EvaluationReport, EvaluationRow};

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
        let mut sites: Vec<&str> = report
            .rows
            .iter()
            .filter_map(|r| r.site.as_deref())
            .collect();
        sites.dedup();
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
    out
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
