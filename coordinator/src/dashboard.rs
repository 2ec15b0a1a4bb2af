//! The read-only dashboard: federations and their rounds in progress, every published
//! model's versions with their federated scores and aliases, and the board's forecasts drawn
//! as p10-p90 bands. Plain HTML with inline SVG, rendered here from a [`DashboardSnapshot`]
//! (no scripts, no build step); [`crate::http`] serves it to operators.

use std::fmt::Write as _;
use std::sync::Mutex;

use crate::board::{Board, BoardQuery, SiteForecast};
use crate::hub::{FederationStatus, Hub};
use crate::registry::{Registry, VersionManifest};

/// Versions shown per model (the newest).
const VERSIONS_SHOWN: usize = 20;
/// Board forecasts drawn (the most recently issued).
const FORECASTS_SHOWN: usize = 24;

/// One published model, its newest versions and its aliases.
#[derive(Clone, Debug)]
pub struct ModelView {
    pub name: String,
    pub target: String,
    pub sector: String,
    pub versions: Vec<VersionManifest>,
    /// `(alias, version)`.
    pub aliases: Vec<(String, u64)>,
}

/// Everything one page shows, read at one moment.
#[derive(Clone, Debug)]
pub struct DashboardSnapshot {
    pub now_unix_s: i64,
    pub federations: Vec<FederationStatus>,
    pub models: Vec<ModelView>,
    pub forecasts: Vec<SiteForecast>,
    /// What could not be read (shown on the page, not hidden).
    pub problems: Vec<String>,
}

impl DashboardSnapshot {
    /// Reads the hub, the registry and the board (forecasts from a day ago to two days ahead).
    pub fn read(hub: &Mutex<Hub>, registry: &Registry, board: &Board, now_unix_s: i64) -> Self {
        let mut problems = Vec::new();
        let federations = match hub.lock() {
            Ok(hub) => hub.federation_status(),
            Err(_) => {
                problems.push("coordinator state poisoned".to_string());
                Vec::new()
            }
        };
        let mut models = Vec::new();
        match registry.models() {
            Ok(published) => {
                for model in published {
                    let name = model.spec.name.clone();
                    let versions = registry.versions(&name).unwrap_or_else(|e| {
                        problems.push(format!("versions of {name}: {e}"));
                        Vec::new()
                    });
                    let aliases = registry
                        .aliases(&name)
                        .map(|a| a.into_iter().map(|a| (a.alias, a.version)).collect())
                        .unwrap_or_else(|e| {
                            problems.push(format!("aliases of {name}: {e}"));
                            Vec::new()
                        });
                    let skip = versions.len().saturating_sub(VERSIONS_SHOWN);
                    models.push(ModelView {
                        name,
                        target: model.spec.target.as_str().to_string(),
                        sector: model.spec.sector.as_str().to_string(),
                        versions: versions.into_iter().skip(skip).collect(),
                        aliases,
                    });
                }
            }
            Err(e) => problems.push(format!("registry: {e}")),
        }
        let query = BoardQuery {
            sector: None,
            site: None,
            participant_id: None,
            target: None,
            from_unix_s: now_unix_s - 86_400,
            to_unix_s: now_unix_s + 2 * 86_400,
        };
        let mut forecasts = board.query(&query).unwrap_or_else(|e| {
            problems.push(format!("board: {e}"));
            Vec::new()
        });
        forecasts.sort_by(|a, b| {
            b.issued_unix_s
                .cmp(&a.issued_unix_s)
                .then(a.site.cmp(&b.site))
        });
        forecasts.truncate(FORECASTS_SHOWN);
        Self {
            now_unix_s,
            federations,
            models,
            forecasts,
            problems,
        }
    }
}

/// Text safe inside HTML elements and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn utc(unix_s: i64) -> String {
    chrono::DateTime::from_timestamp(unix_s, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix_s.to_string())
}

fn percent(value: f64) -> String {
    if value.is_finite() {
        format!("{:.1}%", 100.0 * value)
    } else {
        "-".into()
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th:first-child,td:first-child{text-align:left}\
.forecasts{display:flex;flex-wrap:wrap;gap:1em}\
figure{margin:0;border:1px solid #ddd;padding:.4em}\
figcaption{font-size:.85em}.problem{color:#b00}";

/// The page.
pub fn render(s: &DashboardSnapshot) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"15\"><title>gridfed coordinator</title>\
         <style>{STYLE}</style></head><body><h1>gridfed coordinator</h1>\
         <p>Read-only; refreshes every 15 s. As of {}.</p>",
        utc(s.now_unix_s)
    );
    for problem in &s.problems {
        let _ = write!(page, "<p class=\"problem\">{}</p>", escape(problem));
    }
    federations(&mut page, s);
    for model in &s.models {
        versions(&mut page, model);
    }
    forecasts(&mut page, s);
    page.push_str("</body></html>\n");
    page
}

fn federations(page: &mut String, s: &DashboardSnapshot) {
    page.push_str(
        "<h2>Federations</h2><table id=\"federations\"><tr><th>federation</th><th>tag</th>\
         <th>protection</th><th>members</th><th>latest version</th><th>rounds</th>\
         <th>now</th><th>round in flight</th></tr>",
    );
    for f in &s.federations {
        let round = match f.round {
            Some(r) => format!(
                "round {} with {} selected, for {} s",
                r.number,
                r.selected,
                (s.now_unix_s * 1000 - r.started_unix_ms as i64).max(0) / 1000
            ),
            None => "-".into(),
        };
        let _ = write!(
            page,
            "<tr class=\"federation\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"latest-version\">{}</td><td>{}</td><td class=\"phase\">{}</td><td>{}</td></tr>",
            escape(&f.name),
            escape(&f.tag),
            f.protection,
            f.members,
            f.latest_version,
            f.rounds_planned,
            f.phase,
            round
        );
    }
    page.push_str("</table>");
}

fn versions(page: &mut String, model: &ModelView) {
    let aliases: Vec<String> = model
        .aliases
        .iter()
        .map(|(a, v)| format!("{}&nbsp;&rarr;&nbsp;v{v}", escape(a)))
        .collect();
    let _ = write!(
        page,
        "<h2>Model {name}</h2><p>{target}, sector {sector}; aliases: {aliases}</p>{curve}\
         <table class=\"versions\" data-model=\"{name}\"><tr><th>version</th><th>id</th>\
         <th>round</th><th>participants</th><th>protection</th><th>federated nMAE</th>\
         <th>persistence nMAE</th><th>p10-p90 coverage</th><th>sites</th><th>aliases</th></tr>",
        name = escape(&model.name),
        target = escape(&model.target),
        sector = escape(&model.sector),
        curve = accuracy_svg(model),
        aliases = if aliases.is_empty() {
            "none".to_string()
        } else {
            aliases.join(", ")
        },
    );
    for m in model.versions.iter().rev() {
        let c = &m.content;
        let here: Vec<String> = model
            .aliases
            .iter()
            .filter(|(_, v)| *v == c.version)
            .map(|(a, _)| escape(a))
            .collect();
        // One row per version: the first sector's scores (a model serves one sector).
        let scores = c.federated_evaluation.values().next().map(|e| &e.scores);
        let _ = write!(
            page,
            "<tr class=\"version\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.version,
            escape(m.id.get(..12).unwrap_or(&m.id)),
            c.lineage.round,
            c.lineage.participants,
            c.lineage.protection.name(),
            scores.map_or("-".into(), |s| percent(s.nmae)),
            scores.map_or("-".into(), |s| percent(s.persistence_nmae)),
            scores.map_or("-".into(), |s| percent(s.coverage)),
            scores.map_or("-".into(), |s| s.sites.to_string()),
            here.join(", ")
        );
    }
    page.push_str("</table>");
}

fn forecasts(page: &mut String, s: &DashboardSnapshot) {
    let _ = write!(
        page,
        "<h2>Forecast board</h2><p>{} site forecasts from a day ago to two days ahead \
         (newest issues first; band p10-p90, line p50).</p><div class=\"forecasts\">",
        s.forecasts.len()
    );
    for f in &s.forecasts {
        let _ = write!(
            page,
            "<figure class=\"board-forecast\" data-site=\"{site}\">{svg}<figcaption>{site} \
             ({sector}, {target}) by {model}, issued {issued}</figcaption></figure>",
            site = escape(&f.site),
            sector = escape(&f.sector),
            target = f.target.as_str(),
            model = escape(&f.model),
            issued = utc(f.issued_unix_s),
            svg = band_svg(f),
        );
    }
    page.push_str("</div>");
}

/// The model's accuracy per version: federated nMAE (solid) against the persistence forecast
/// on the same held-out windows (dashed), so a federation that stops improving or diverges is
/// seen at a glance. Versions without a federated evaluation are left out.
fn accuracy_svg(model: &ModelView) -> String {
    const W: f64 = 480.0;
    const H: f64 = 150.0;
    const PAD: f64 = 24.0;
    let points: Vec<(u64, f64, f64)> = model
        .versions
        .iter()
        .filter_map(|m| {
            let e = m.content.federated_evaluation.values().next()?;
            let (nmae, naive) = (e.scores.nmae, e.scores.persistence_nmae);
            (nmae.is_finite() && naive.is_finite()).then_some((m.content.version, nmae, naive))
        })
        .collect();
    if points.is_empty() {
        return String::new();
    }
    let first = points[0].0 as f64;
    let span = (points[points.len() - 1].0 as f64 - first).max(1.0);
    let hi = points
        .iter()
        .map(|p| p.1.max(p.2))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let x = |version: u64| PAD + (W - 2.0 * PAD) * (version as f64 - first) / span;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / hi;
    let line = |pick: fn(&(u64, f64, f64)) -> f64| {
        let mut out = String::new();
        for p in &points {
            let _ = write!(out, "{:.1},{:.1} ", x(p.0), y(pick(p)));
        }
        out
    };
    // A dot per version, so that a single version still shows.
    let mut dots = String::new();
    for p in &points {
        let _ = write!(
            dots,
            "<circle class=\"version-nmae\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"#1f77b4\"/>\
             <circle cx=\"{x:.1}\" cy=\"{naive:.1}\" r=\"2\" fill=\"#7f7f7f\"/>",
            x = x(p.0),
            y = y(p.1),
            naive = y(p.2),
        );
    }
    format!(
        "<svg class=\"accuracy\" xmlns=\"http://www.w3.org/2000/svg\" width=\"480\" height=\"150\" \
         role=\"img\" aria-label=\"federated nMAE per version\">\
         <rect width=\"480\" height=\"150\" fill=\"white\" stroke=\"#ccc\"/>\
         <polyline class=\"federated-nmae\" points=\"{model}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\
         <polyline class=\"persistence-nmae\" points=\"{naive}\" fill=\"none\" stroke=\"#7f7f7f\" stroke-dasharray=\"4 3\"/>{dots}\
         <text x=\"2\" y=\"12\" font-size=\"10\">nMAE {top}</text>\
         <text x=\"{PAD}\" y=\"146\" font-size=\"10\">v{v0}</text>\
         {last}\
         <text x=\"300\" y=\"12\" font-size=\"10\" fill=\"#1f77b4\">federated</text>\
         <text x=\"370\" y=\"12\" font-size=\"10\" fill=\"#7f7f7f\">persistence</text></svg>",
        model = line(|p| p.1),
        naive = line(|p| p.2),
        top = percent(hi),
        v0 = points[0].0,
        last = match points.last() {
            Some(p) if points.len() > 1 => format!(
                "<text x=\"{:.1}\" y=\"146\" font-size=\"10\" text-anchor=\"end\">v{}</text>",
                W - PAD,
                p.0
            ),
            _ => String::new(),
        },
    )
}

/// A 320x120 picture of one forecast: the p10-p90 band and the p50 line, kW axis labelled.
fn band_svg(f: &SiteForecast) -> String {
    const W: f64 = 320.0;
    const H: f64 = 120.0;
    const PAD: f64 = 14.0;
    let n = f.timestamps_unix_s.len();
    let values = f
        .p10_kw
        .iter()
        .chain(&f.p90_kw)
        .copied()
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if n < 2 || !lo.is_finite() {
        return "<svg width=\"320\" height=\"120\"></svg>".into();
    }
    let (lo, hi) = (lo.min(0.0), if hi > lo { hi } else { lo + 1.0 });
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n - 1) as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo) / (hi - lo);
    let mut band = String::new();
    for (i, v) in f.p90_kw.iter().enumerate() {
        let _ = write!(band, "{:.1},{:.1} ", x(i), y(*v));
    }
    for (i, v) in f.p10_kw.iter().enumerate().rev() {
        let _ = write!(band, "{:.1},{:.1} ", x(i), y(*v));
    }
    let mut median = String::new();
    for (i, v) in f.p50_kw.iter().enumerate() {
        let _ = write!(median, "{:.1},{:.1} ", x(i), y(*v));
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"120\" \
         role=\"img\" aria-label=\"forecast band\">\
         <rect width=\"320\" height=\"120\" fill=\"white\"/>\
         <polygon class=\"band\" points=\"{band}\" fill=\"#1f77b4\" fill-opacity=\"0.25\"/>\
         <polyline class=\"p50\" points=\"{median}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\
         <text x=\"2\" y=\"11\" font-size=\"10\">{hi:.1} kW</text>\
         <text x=\"2\" y=\"117\" font-size=\"10\">{lo:.1} kW</text></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::Target;

    fn forecast(site: &str) -> SiteForecast {
        SiteForecast {
            participant_id: "p000001".into(),
            site: site.into(),
            sector: "residential".into(),
            target: Target::Load,
            model: "res-load@1".into(),
            version_id: "ab".repeat(32),
            issued_unix_s: 1_700_000_000,
            step_s: 3600,
            timestamps_unix_s: (0..24).map(|i| 1_700_003_600 + i * 3600).collect(),
            p10_kw: (0..24).map(|i| i as f64).collect(),
            p50_kw: (0..24).map(|i| i as f64 + 1.0).collect(),
            p90_kw: (0..24).map(|i| i as f64 + 3.0).collect(),
        }
    }

    #[test]
    fn names_are_escaped_and_every_forecast_gets_a_band() {
        let snapshot = DashboardSnapshot {
            now_unix_s: 1_700_000_000,
            federations: vec![FederationStatus {
                name: "<script>alert(1)</script>".into(),
                tag: "t".into(),
                protection: "masked",
                rounds_planned: 5,
                latest_version: 3,
                members: 4,
                phase: "collecting",
                round: None,
            }],
            models: Vec::new(),
            forecasts: vec![forecast("roof \"a\""), forecast("roof-b")],
            problems: vec!["board: <down>".into()],
        };
        let page = render(&snapshot);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("roof &quot;a&quot;"));
        assert!(page.contains("board: &lt;down&gt;"));
        assert_eq!(page.matches("<polygon class=\"band\"").count(), 2);
        assert_eq!(page.matches("<polyline class=\"p50\"").count(), 2);
        // 24 p90 points then 24 p10 points.
        let svg = band_svg(&forecast("x"));
        let band = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(band.split_whitespace().count(), 48);
    }
}
