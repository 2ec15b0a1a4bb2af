//! How `gridfed models` shows what the registry answers: tables and JSON of versions,
//! aliases, manifests and comparisons.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use anyhow::Result;
use coordinator::registry::VersionManifest;
use proto::registry as pb;

use super::train::Format;

pub(super) fn utc(unix_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| unix_ms.to_string())
}

pub(super) fn print_alias(a: &pb::AliasInfo, format: Format) {
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"model": a.model, "alias": a.alias, "version": a.version,
            "previous": a.previous, "history": serde_json::from_str::<serde_json::Value>(&a.history_json).ok()})
        );
    } else {
        println!("{}@{} -> version {}", a.model, a.alias, a.version);
    }
}

pub(super) fn print_manifest(m: &VersionManifest, aliases: &[String]) {
    let c = &m.content;
    let l = &c.lineage;
    println!(
        "model        {}@{}  (aliases: {})",
        c.model,
        c.version,
        aliases.join(", ")
    );
    println!("id           {}", m.id);
    println!("signed by    {}", m.signer);
    println!("created      {} UTC", utc(c.created_unix_ms));
    println!(
        "spec         target {:?}, sector {}, {} context / {} horizon steps of {}, hidden {:?}, quantiles {:?}",
        c.spec.target,
        c.spec.sector.as_str(),
        c.spec.context,
        c.spec.horizon,
        c.spec.resolution.as_str(),
        c.spec.architecture.hidden,
        c.spec.architecture.quantiles
    );
    println!(
        "lineage      round {}, {} participants, {} protection, clip {}, parent {}",
        l.round,
        l.participants,
        l.protection.name(),
        l.privacy.clip,
        l.parent
            .as_ref()
            .map(|p| format!(
                "v{} {}",
                p.version,
                p.id.as_deref().map(|i| &i[..12]).unwrap_or("(initial)")
            ))
            .unwrap_or_else(|| "none".into())
    );
    match &l.privacy.differential_privacy {
        Some(dp) => println!(
            "privacy      differential privacy: epsilon {:.3} at delta {:e} over {} rounds (noise multiplier {}, L2 clip {}, sampling rate {}); {}",
            dp.epsilon,
            dp.delta,
            dp.rounds,
            dp.noise_multiplier,
            dp.clip_l2,
            dp.sampling_rate,
            dp.accountant
        ),
        None => println!("privacy      differential privacy: none"),
    }
    println!(
        "weights      {} parameters, sha256 {}",
        c.weights.parameters, c.weights.sha256
    );
    for (sector, e) in &c.federated_evaluation {
        let s = &e.scores;
        println!(
            "evaluation   {sector}: {} sites{}, {} holdout windows ({}, round {}): nMAE {:.2}%, \
             nRMSE {:.2}%, p10-p90 coverage {:.1}%, skill vs persistence {}",
            s.sites,
            if s.abstained > 0 {
                format!(" ({} abstained)", s.abstained)
            } else {
                String::new()
            },
            s.windows,
            e.protection.name(),
            e.round,
            100.0 * s.nmae,
            100.0 * s.nrmse,
            100.0 * s.coverage,
            s.skill.map_or("-".into(), |k| format!("{k:.3}"))
        );
    }
    if c.federated_evaluation.is_empty() {
        println!("evaluation   none (the version's evaluation rounds failed)");
    }
    for (name, value) in &c.metrics {
        println!("metric       {name} = {value:.6}");
    }
}

pub(super) fn print_comparison(
    a: &VersionManifest,
    b: &VersionManifest,
    format: Format,
) -> Result<()> {
    let names: BTreeSet<&String> = a
        .content
        .metrics
        .keys()
        .chain(b.content.metrics.keys())
        .collect();
    let settings = settings_diff(a, b)?;
    if format == Format::Json {
        let settings: serde_json::Map<String, serde_json::Value> = settings
            .iter()
            .map(|(k, (x, y))| (k.clone(), serde_json::json!([x, y])))
            .collect();
        let metrics: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .map(|n| {
                (
                    (*n).clone(),
                    serde_json::json!([a.content.metrics.get(*n), b.content.metrics.get(*n)]),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
            "versions": [format!("{}@{}", a.content.model, a.content.version), format!("{}@{}", b.content.model, b.content.version)],
            "ids": [a.id, b.id], "settings_differ": settings, "metrics": metrics})
        );
        return Ok(());
    }
    let label = |m: &VersionManifest| format!("{}@{}", m.content.model, m.content.version);
    let row = |name: &str, x: String, y: String| println!("{name:<16} {x:>24} {y:>24}");
    row("", label(a), label(b));
    row("id", a.id[..12].to_string(), b.id[..12].to_string());
    row(
        "created (UTC)",
        utc(a.content.created_unix_ms),
        utc(b.content.created_unix_ms),
    );
    row(
        "round",
        a.content.lineage.round.to_string(),
        b.content.lineage.round.to_string(),
    );
    row(
        "participants",
        a.content.lineage.participants.to_string(),
        b.content.lineage.participants.to_string(),
    );
    row(
        "protection",
        a.content.lineage.protection.name().into(),
        b.content.lineage.protection.name().into(),
    );
    let value = |m: &VersionManifest, n: &str| {
        m.content
            .metrics
            .get(n)
            .map(|v| format!("{v:.6}"))
            .unwrap_or_else(|| "-".into())
    };
    for n in names {
        row(n, value(a, n), value(b, n));
    }
    if settings.is_empty() {
        println!("settings         identical specs");
    } else {
        println!("settings that differ:");
        for (key, (x, y)) in &settings {
            row(key, x.to_string(), y.to_string());
        }
    }
    Ok(())
}

/// Spec settings (dotted paths into the specs' JSON, e.g. `training.learning_rate`) whose
/// values differ between two versions, with both values.
fn settings_diff(
    a: &VersionManifest,
    b: &VersionManifest,
) -> Result<BTreeMap<String, (serde_json::Value, serde_json::Value)>> {
    let (mut left, mut right) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &serde_json::to_value(&a.content.spec)?, &mut left);
    flatten("", &serde_json::to_value(&b.content.spec)?, &mut right);
    let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| left.get(*k) != right.get(*k))
        .map(|k| {
            let get = |m: &BTreeMap<String, serde_json::Value>| {
                m.get(k).cloned().unwrap_or(serde_json::Value::Null)
            };
            (k.clone(), (get(&left), get(&right)))
        })
        .collect())
}

/// Leaves of a JSON object under dotted paths; arrays are leaves (compared whole).
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_names_nested_settings_by_dotted_path() {
        let mut out = BTreeMap::new();
        let value = serde_json::json!({"name": "m", "training": {"learning_rate": 0.01, "server": {"momentum": 0.9}}, "hidden": [64, 64]});
        flatten("", &value, &mut out);
        assert_eq!(out["training.learning_rate"], serde_json::json!(0.01));
        assert_eq!(out["training.server.momentum"], serde_json::json!(0.9));
        assert_eq!(out["hidden"], serde_json::json!([64, 64]));
        assert_eq!(out.len(), 4);
    }
}
