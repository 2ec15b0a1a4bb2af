//! Writes a probe for checking an exported model outside gridfed: one deterministic input row
//! and the quantile forecast gridfed computes for it, as JSON.
//! `examples/python/check_export.py` reproduces the forecast with numpy from the export alone.
//!
//! ```text
//! gridfed models export NAME@production --out export/
//! cargo run --release --example export_probe -- export/ > probe.json
//! python examples/python/check_export.py export/ probe.json
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

fn main() -> Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: export_probe EXPORT_DIR")?;
    let artifact = models::ModelArtifact::load(&dir)
        .with_context(|| format!("loading the export in {}", dir.display()))?;
    let forecaster = artifact.forecaster()?;
    let n = forecaster.config().n_features;
    // Inputs of the scale normalized features have: a fixed pseudo-random row in [-2, 2].
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7_919 + 13) % 4_001) as f32 / 1_000.0 - 2.0)
        .collect();
    let forecast = forecaster.predict_rows(&x)?;
    let (q, h) = (forecast.quantiles.len(), forecast.horizon);
    let rows: Vec<Vec<f32>> = (0..q)
        .map(|level| (0..h).map(|step| forecast.value(0, level, step)).collect())
        .collect();
    println!(
        "{}",
        json!({"x": x, "quantiles": forecast.quantiles, "forecast": rows})
    );
    Ok(())
}
