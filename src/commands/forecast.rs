//! `gridfed forecast`: quantile forecasts from a registered model, over the coordinator's
//! Forecast gRPC service, for one site of a telemetry Parquet file.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use datasets::Target;
use proto::forecast::forecast_client::ForecastClient;

/// Steps of history sent at most (the model reads its context, plus 28 days to normalize load).
const MAX_HISTORY_STEPS: usize = 60 * 96;
/// Steps of future covariates sent at most.
const MAX_FUTURE_STEPS: usize = 7 * 96;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ForecastFormat {
    Table,
    Json,
    Csv,
}

/// Which site of which telemetry file.
#[derive(Args)]
pub struct SiteInput {
    /// Telemetry Parquet file: the site's history, and for forecasts past its end rows with
    /// the known-future covariates (target empty) from the forecast origin on.
    #[arg(long)]
    pub input: PathBuf,
    /// Site metadata (default: sites.json beside the input).
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Site (default: the file's only or first site).
    #[arg(long)]
    pub site: Option<String>,
    /// load or pv (default: the one the site measures; required when it measures both).
    #[arg(long)]
    pub target: Option<Target>,
}

impl SiteInput {
    pub(super) fn load(&self) -> Result<SiteHistory> {
        load_site(
            &self.input,
            self.metadata.as_deref(),
            self.site.as_deref(),
            self.target,
        )
    }
}

#[derive(Args)]
pub struct ForecastArgs {
    /// NAME (its production alias), NAME@VERSION or NAME@ALIAS.
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub site: SiteInput,
    /// First forecast step (RFC 3339, e.g. 2024-02-10T00:00:00Z, or unix seconds); default: the step after
    /// the last observation. Later target values in the file are ignored (backtests).
    #[arg(long)]
    pub origin: Option<String>,
    /// How far ahead: 24h, 90m, 1d.
    #[arg(long, default_value = "24h")]
    pub horizon: String,
    #[command(flatten)]
    pub remote: super::models::Remote,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = ForecastFormat::Table)]
    pub format: ForecastFormat,
}

/// "24h" / "90m" / "1d" / "3600s" in seconds.
/// An RFC 3339 time (2024-02-10T00:00:00Z) or UTC unix seconds.
pub(crate) fn parse_instant(flag: &str, text: &str) -> Result<i64> {
    if let Ok(unix_s) = text.parse::<i64>() {
        return Ok(unix_s);
    }
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{flag} `{text}` is neither an RFC 3339 time nor unix seconds"))?
        .timestamp())
}

pub(crate) fn parse_duration(text: &str) -> Result<i64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .with_context(|| format!("--horizon `{text}`: expected e.g. 24h"))?;
    let unit_s = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        other => bail!("--horizon `{text}`: unknown unit `{other}` (s, m, h, d)"),
    };
    ensure!(n > 0, "--horizon must be positive");
    Ok(n * unit_s)
}

/// One site's telemetry on its grid, with its metadata and the target to forecast.
pub(super) struct SiteHistory {
    pub series: datasets::RegularSeries,
    pub site: datasets::SiteMetadata,
    pub target: Target,
}

/// Reads `site` (default: the first) of a telemetry Parquet file and puts it on its grid.
fn load_site(
    input: &std::path::Path,
    metadata: Option<&std::path::Path>,
    site: Option<&str>,
    target: Option<Target>,
) -> Result<SiteHistory> {
    let metadata_path = match metadata {
        Some(p) => p.to_path_buf(),
        None => input
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("sites.json"),
    };
    let sites = datasets::metadata::read_metadata(&metadata_path)
        .with_context(|| format!("reading site metadata {}", metadata_path.display()))?;
    let validated = datasets::reader::read_telemetry(input, &sites)
        .with_context(|| format!("reading {}", input.display()))?;
    let chosen = match site {
        Some(id) => validated
            .into_iter()
            .find(|s| s.telemetry.site_id == id)
            .with_context(|| format!("site `{id}` is not in {}", input.display()))?,
        None => validated
            .into_iter()
            .next()
            .with_context(|| format!("{} holds no site", input.display()))?,
    };
    let site = sites
        .iter()
        .find(|s| s.site_id == chosen.telemetry.site_id)
        .context("site without metadata")?
        .clone();
    let series = datasets::grid_site(
        &chosen.telemetry,
        chosen.resolution,
        chosen.resolution,
        &site,
    )
    .context("putting the telemetry on its grid")?
    .series;
    let t = &series.telemetry;
    let target = match (target, &t.load_kw, &t.pv_kw) {
        (Some(target), _, _) => target,
        (None, Some(_), None) => Target::Load,
        (None, None, Some(_)) => Target::Pv,
        _ => bail!("site `{}` measures load and PV: pass --target", t.site_id),
    };
    Ok(SiteHistory {
        series,
        site,
        target,
    })
}

pub fn run(args: ForecastArgs) -> Result<()> {
    let SiteHistory {
        series,
        site,
        target,
    } = args.site.load()?;
    let site = &site;
    let at_unix_s = args
        .origin
        .as_deref()
        .map(|text| parse_instant("--origin", text))
        .transpose()?;
    // The step at --origin, or after the last observation.
    let origin = models::serving::origin_index(&series, target, at_unix_s)
        .with_context(|| format!("--origin {}", args.origin.as_deref().unwrap_or("(default)")))?;
    let step_s = series.resolution.seconds();
    let horizon_s = parse_duration(&args.horizon)?;
    ensure!(
        horizon_s % step_s == 0,
        "--horizon {} is not a whole number of {} steps",
        args.horizon,
        series.resolution.as_str()
    );
    let request = coordinator::forecast::request_from_series(
        &args.model,
        &series,
        site,
        target,
        origin,
        u32::try_from(horizon_s / step_s).context("--horizon too long")?,
        (MAX_HISTORY_STEPS, MAX_FUTURE_STEPS),
    )
    .map_err(anyhow::Error::msg)?;
    let response = super::runtime::runtime()?.block_on(async {
        let mut client = forecast_client(&args.remote).await?;
        client
            .forecast(request)
            .await
            .map_err(|e| anyhow::anyhow!("{:?}: {}", e.code(), e.message()))
    })?;
    print(&response.into_inner(), args.format)
}

/// A Forecast client for the coordinator (or a replica) at `remote`.
pub(super) async fn forecast_client(
    remote: &super::models::Remote,
) -> Result<ForecastClient<tonic::transport::Channel>> {
    Ok(ForecastClient::new(remote.connect().await?)
        .max_decoding_message_size(proto::MAX_MESSAGE_BYTES))
}

/// A quantile forecast's columns: `p10_kw`-style names and each level's values.
pub(super) type LevelColumns<'a> = Vec<(String, &'a [f32])>;

pub(super) fn level_columns<'a>(
    levels: impl Iterator<Item = (f32, &'a [f32])>,
) -> LevelColumns<'a> {
    levels
        .map(|(level, values)| (format!("p{:02.0}_kw", level * 100.0), values))
        .collect()
}

pub(super) fn utc_time(unix_s: i64) -> String {
    chrono::DateTime::from_timestamp(unix_s, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix_s.to_string())
}

/// `[{timestamp, p10_kw, ...}]`, in watts' precision (the f32 forecast has no more).
pub(super) fn steps_json(timestamps: &[i64], columns: &LevelColumns<'_>) -> serde_json::Value {
    timestamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| {
            let mut step = serde_json::Map::new();
            step.insert("timestamp".into(), utc_time(ts).into());
            for (name, values) in columns {
                let kw = values.get(i).map(|&v| (f64::from(v) * 1e3).round() / 1e3);
                step.insert(name.clone(), kw.into());
            }
            serde_json::Value::from(step)
        })
        .collect()
}

/// One line per step, with a header line: a table, or CSV.
pub(super) fn print_steps(timestamps: &[i64], columns: &LevelColumns<'_>, csv: bool) {
    if csv {
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        println!("timestamp,{}", names.join(","));
    } else {
        print!("{:<22}", "timestamp (UTC)");
        for (name, _) in columns {
            print!(" {name:>10}");
        }
        println!();
    }
    for (i, &ts) in timestamps.iter().enumerate() {
        let values: Vec<String> = columns
            .iter()
            .map(|(_, v)| v.get(i).map(|x| format!("{x:.3}")).unwrap_or_default())
            .collect();
        if csv {
            println!("{},{}", utc_time(ts), values.join(","));
        } else {
            print!("{:<22}", utc_time(ts));
            for v in values {
                print!(" {v:>10}");
            }
            println!();
        }
    }
}

fn print(r: &proto::forecast::ForecastResponse, format: ForecastFormat) -> Result<()> {
    let columns = level_columns(
        r.quantiles
            .iter()
            .map(|q| (q.level, q.values_kw.as_slice())),
    );
    match format {
        ForecastFormat::Json => {
            let accuracy = r.accuracy.as_ref().map(|a| {
                serde_json::json!({"sector": a.sector, "sites": a.sites, "nmae": a.nmae,
                    "nrmse": a.nrmse, "coverage": a.coverage, "skill": a.skill})
            });
            let privacy = r.privacy.as_ref().map(|p| {
                serde_json::json!({"epsilon": p.epsilon, "delta": p.delta,
                    "noise_multiplier": p.noise_multiplier, "clip_l2": p.clip_l2, "rounds": p.rounds})
            });
            println!(
                "{}",
                serde_json::json!({"model": r.model, "version": r.version, "version_id": r.version_id,
                    "federated_accuracy": accuracy, "differential_privacy": privacy,
                    "steps": steps_json(&r.timestamps_unix_s, &columns)})
            );
        }
        ForecastFormat::Csv => print_steps(&r.timestamps_unix_s, &columns, true),
        ForecastFormat::Table => {
            println!(
                "{}@{} (id {})",
                r.model,
                r.version,
                &r.version_id[..12.min(r.version_id.len())]
            );
            if let Some(a) = &r.accuracy {
                println!(
                    "federated evaluation ({}, {} sites): nMAE {:.1}%, p10-p90 coverage {:.0}%",
                    a.sector,
                    a.sites,
                    100.0 * a.nmae,
                    100.0 * a.coverage
                );
            }
            match &r.privacy {
                Some(p) => println!(
                    "differential privacy: epsilon {:.2} at delta {:e} over {} rounds (site-level)",
                    p.epsilon, p.delta, p.rounds
                ),
                None => println!("differential privacy: none"),
            }
            print_steps(&r.timestamps_unix_s, &columns, false);
        }
    }
    Ok(())
}
