//! `gridfed datasets synth|validate|import`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use datasets::Resolution;
use datasets::import::{CsvImport, PowerUnit, import_csv, merge_columns};
use datasets::quality::{quality_report, site_quality_report};
use datasets::synth::{FleetConfig, Profile, generate_fleet};

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Generate a synthetic DER fleet: one Parquet file per site plus sites.json.
    Synth(SynthArgs),
    /// Validate a fleet directory or a single Parquet file and print a quality report per site.
    Validate(ValidateArgs),
    /// Import CSV meter exports of one site into the telemetry schema.
    Import(ImportArgs),
}

#[derive(Args)]
pub struct SynthArgs {
    /// Sites in the fleet.
    #[arg(long, default_value_t = 20)]
    pub sites: usize,
    /// Days of telemetry per site.
    #[arg(long, default_value_t = 365)]
    pub days: usize,
    /// Grid resolution: 15min, 30min or 1h.
    #[arg(long, default_value = "1h")]
    pub resolution: Resolution,
    /// Seed: the same seed writes the same fleet.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// `clean` (complete, with weather) or `realistic` (appliance-driven homes, no weather
    /// columns, daylight-only inverters, outages).
    #[arg(long, default_value = "clean")]
    pub profile: Profile,
    /// Also write each site as its operator's export: local wall time with DST, power in W
    /// (`OUT/exports/SITE.csv`; `gridfed datasets import --timezone ZONE --unit W` reads it).
    #[arg(long)]
    pub local_csv: bool,
    /// Fleet directory to write (sites.json + one Parquet file per site).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// A fleet directory (sites.json + *.parquet) or one Parquet file (with --metadata).
    pub path: PathBuf,
    /// Metadata file for a single Parquet file (default: sites.json beside it).
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// CSV file(s) of one site; repeat together with --column/--value to merge several.
    #[arg(long = "csv", required = true)]
    pub csv: Vec<PathBuf>,
    /// Schema column each CSV fills (load_kw, pv_kw, temperature_c, ...), one per --csv.
    #[arg(long = "column", required = true)]
    pub column: Vec<String>,
    /// Name of the value column in each CSV, one per --csv.
    #[arg(long = "value", required = true)]
    pub value: Vec<String>,
    /// Header of the CSV column holding the timestamps.
    #[arg(long, default_value = "timestamp")]
    pub timestamp_column: String,
    /// Unit of the values: power (W, kW) or energy per interval (Wh, kWh: divided by the
    /// interval's length into mean power).
    #[arg(long, default_value = "kW")]
    pub unit: PowerUnit,
    /// Timestamps label the end of each interval (as most energy exports do): moved back one
    /// step to the schema's interval start.
    #[arg(long)]
    pub interval_end: bool,
    /// Time zone of naive timestamps (IANA name, or UTC); required when the export has
    /// timestamps without a UTC offset. Timestamps with an offset are used as is.
    #[arg(long)]
    pub timezone: Option<chrono_tz::Tz>,
    /// chrono format of the timestamps (default: RFC 3339 or "%Y-%m-%d %H:%M:%S").
    #[arg(long)]
    pub timestamp_format: Option<String>,
    /// The site id the telemetry is written under.
    #[arg(long)]
    pub site_id: String,
    /// Output Parquet file.
    #[arg(long, required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// Parse and convert everything, print what would be written (span, step, each column's
    /// range and gaps, the first rows in UTC and local time), write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(cmd: DatasetsCommand) -> Result<()> {
    match cmd {
        DatasetsCommand::Synth(args) => synth(args),
        DatasetsCommand::Validate(args) => validate(args),
        DatasetsCommand::Import(args) => import(args),
    }
}

fn synth(args: SynthArgs) -> Result<()> {
    let config = FleetConfig {
        sites: args.sites,
        days: args.days,
        resolution: args.resolution,
        seed: args.seed,
        profile: args.profile,
        ..FleetConfig::default()
    };
    let started = std::time::Instant::now();
    let fleet = generate_fleet(&config);
    datasets::writer::write_fleet_dir(&args.out, &fleet.sites, &fleet.telemetry)
        .with_context(|| format!("writing the fleet to {}", args.out.display()))?;
    if args.local_csv {
        let exports = args.out.join("exports");
        std::fs::create_dir_all(&exports)
            .with_context(|| format!("creating {}", exports.display()))?;
        for (meta, telemetry) in fleet.sites.iter().zip(&fleet.telemetry) {
            let tz = meta
                .tz()
                .with_context(|| format!("site `{}`: time zone", meta.site_id))?;
            let path = exports.join(format!("{}.csv", meta.site_id));
            datasets::export::write_local_csv(&path, telemetry, tz)?;
        }
        println!("wrote local-time CSV exports to {}", exports.display());
    }
    println!(
        "wrote {} sites x {} days at {} ({:?} profile) to {} in {:.2} s",
        fleet.sites.len(),
        args.days,
        args.resolution,
        args.profile,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn validate(args: ValidateArgs) -> Result<()> {
    let (validated, sites) = if args.path.is_dir() {
        let fleet = datasets::reader::read_fleet_dir(&args.path)?;
        (fleet.telemetry, fleet.sites)
    } else {
        let metadata = args
            .metadata
            .clone()
            .unwrap_or_else(|| args.path.with_file_name(datasets::metadata::METADATA_FILE));
        let sites = datasets::metadata::read_metadata(&metadata)?;
        (datasets::reader::read_telemetry(&args.path, &sites)?, sites)
    };
    let reports: Vec<_> = validated
        .iter()
        .map(
            |v| match sites.iter().find(|s| s.site_id == v.telemetry.site_id) {
                Some(meta) => site_quality_report(&v.telemetry, v.resolution, meta),
                None => quality_report(&v.telemetry, v.resolution),
            },
        )
        .collect();
    let warned = reports.iter().filter(|r| !r.warnings.is_empty()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            println!("{report}");
        }
        println!("{} site(s) valid", reports.len());
        if warned > 0 {
            println!("{warned} site(s) with warnings: see `warning` lines above");
        }
    }
    Ok(())
}

fn import(args: ImportArgs) -> Result<()> {
    if args.csv.len() != args.column.len() || args.csv.len() != args.value.len() {
        bail!("give one --column and one --value per --csv");
    }
    let mut parts = Vec::new();
    for ((csv, column), value) in args.csv.iter().zip(&args.column).zip(&args.value) {
        let spec = CsvImport {
            site_id: args.site_id.clone(),
            timestamp_column: args.timestamp_column.clone(),
            value_column: value.clone(),
            target_column: column.clone(),
            unit: args.unit,
            source_timezone: args.timezone,
            timestamp_format: args.timestamp_format.clone(),
            interval_end: args.interval_end,
        };
        parts.push(import_csv(csv, &spec)?);
    }
    let telemetry = merge_columns(parts)?;
    let out = match (&args.out, args.dry_run) {
        (Some(out), false) => out,
        _ => {
            print!("{}", import_preview(&telemetry, args.timezone));
            return Ok(());
        }
    };
    datasets::writer::write_telemetry(out, std::slice::from_ref(&telemetry))?;
    println!(
        "wrote {} rows of site `{}` to {}",
        telemetry.len(),
        telemetry.site_id,
        out.display()
    );
    Ok(())
}

/// What `datasets import --dry-run` shows: enough to see a wrong unit, zone or column before
/// anything is written.
fn import_preview(t: &datasets::SiteTelemetry, tz: Option<chrono_tz::Tz>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let when = |s: i64| {
        let utc = chrono::DateTime::from_timestamp(s, 0).unwrap_or_default();
        match tz {
            Some(tz) => format!(
                "{} UTC ({} {})",
                utc.format("%Y-%m-%d %H:%M"),
                utc.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
                tz
            ),
            None => format!("{} UTC", utc.format("%Y-%m-%d %H:%M")),
        }
    };
    let _ = writeln!(
        out,
        "dry run: would write {} rows of site `{}` (nothing written)",
        t.len(),
        t.site_id
    );
    if let (Some(first), Some(last)) = (t.timestamps.first(), t.timestamps.last()) {
        let _ = writeln!(out, "  span      {} .. {}", when(*first), when(*last));
        let mut steps: Vec<i64> = t.timestamps.windows(2).map(|w| w[1] - w[0]).collect();
        steps.sort_unstable();
        if let Some(step) = steps.get(steps.len() / 2) {
            let longer = steps.iter().filter(|s| **s > *step).count();
            let _ = writeln!(out, "  step      {} s (median); {longer} longer gaps", step);
        }
    }
    for (name, values) in t.columns() {
        let Some(values) = values else { continue };
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        let (min, max) = present
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(*v), hi.max(*v))
            });
        let mean = present.iter().sum::<f64>() / present.len().max(1) as f64;
        let _ = writeln!(
            out,
            "  {name:<22} {} values, {} missing, min {min:.3}, mean {mean:.3}, max {max:.3}",
            present.len(),
            values.len() - present.len()
        );
    }
    for i in 0..t.len().min(3) {
        let cells: Vec<String> = t
            .columns()
            .iter()
            .filter_map(|(name, v)| {
                v.map(|v| format!("{name}={}", v[i].map_or("-".into(), |x| format!("{x:.3}"))))
            })
            .collect();
        let _ = writeln!(
            out,
            "  row {i}     {}  {}",
            when(t.timestamps[i]),
            cells.join(" ")
        );
    }
    out
}
