//! `gridfed participant forecast`: the site's forecast from its own fine-tuned model, on the
//! site, from its own telemetry (`participant::personal`).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::Args;
use participant::personal::{PersonalModel, PersonalSource};

use super::forecast::ForecastFormat;

#[derive(Args, Debug)]
pub struct PersonalForecastArgs {
    /// participant.toml (its `personalized_model_dir` and `[data]` are used).
    #[arg(long)]
    pub config: PathBuf,
    /// How far ahead: 24h, 90m, 1d (a whole number of the model's steps).
    #[arg(long, default_value = "24h")]
    pub horizon: String,
    /// First forecast step (RFC 3339 or unix seconds); default: the step after the site's
    /// last observation. Later observations are ignored (backtests).
    #[arg(long)]
    pub at: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = ForecastFormat::Table)]
    pub format: ForecastFormat,
}

pub fn run(args: &PersonalForecastArgs) -> Result<()> {
    let config = super::federation::load_participant_config(&args.config)?;
    let dir = config.personalized_model_dir.clone().with_context(|| {
        format!(
            "{}: no personalized_model_dir, so the daemon keeps no fine-tuned model to forecast with",
            args.config.display()
        )
    })?;
    let resolution: datasets::Resolution = config
        .data
        .resolution
        .parse()
        .map_err(|e: String| anyhow::anyhow!("data.resolution: {e}"))?;
    let (site, series) = participant::site::load_series(&config.data, resolution)?;
    let model = PersonalModel::load(&dir, &series)?;
    let at_unix_s = args
        .at
        .as_deref()
        .map(|text| super::forecast::parse_instant("--at", text))
        .transpose()?;
    let horizon_s = super::forecast::parse_duration(&args.horizon)?;
    let step_s = resolution.seconds();
    ensure!(
        horizon_s % step_s == 0,
        "--horizon {} is not a whole number of {} steps",
        args.horizon,
        resolution.as_str()
    );
    let steps = usize::try_from(horizon_s / step_s).context("--horizon too long")?;
    let (forecast, source) = model.forecast(&series, &site, at_unix_s, steps)?;
    let source_name = match source {
        PersonalSource::FineTuned => "fine-tuned model".to_string(),
        PersonalSource::SeasonalNaive(season) => format!(
            "seasonal naive ({:?}): the seasonal guard found it better than the fine-tuned model on this site's validation days",
            season
        ),
    };
    let columns = super::forecast::level_columns(
        forecast
            .levels
            .iter()
            .copied()
            .zip(forecast.values_kw.iter().map(Vec::as_slice)),
    );
    match args.format {
        ForecastFormat::Json => println!(
            "{}",
            serde_json::json!({"site": site.site_id, "target": model.target().as_str(),
                "source": match source { PersonalSource::FineTuned => "fine_tuned", PersonalSource::SeasonalNaive(_) => "seasonal_naive" },
                "model_dir": dir,
                "steps": super::forecast::steps_json(&forecast.timestamps_unix_s, &columns)})
        ),
        ForecastFormat::Csv => {
            super::forecast::print_steps(&forecast.timestamps_unix_s, &columns, true)
        }
        ForecastFormat::Table => {
            println!(
                "site {} ({}), {source_name}, from {}",
                site.site_id,
                model.target().as_str(),
                dir.display()
            );
            super::forecast::print_steps(&forecast.timestamps_unix_s, &columns, false);
        }
    }
    Ok(())
}
