//! `gridfed init local`: a whole federation on this machine (see the module docs above).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ModelChoice;
use super::files::{self, ParticipantSettings, Tokens};

#[derive(Args)]
pub struct LocalArgs {
    /// Directory to create (must not exist or be empty); `gridfed up` finds this default.
    pub dir: Option<PathBuf>,
    /// Sites (one participant daemon each); masked aggregation needs at least 3.
    #[arg(long, visible_alias = "participants", default_value_t = 3)]
    pub sites: usize,
    /// Use this fleet directory (`sites.json` + Parquet) instead of a synthetic one; its first
    /// `--sites` sites that measure the target become the participants.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Days of synthetic telemetry per site.
    #[arg(long, default_value_t = 120)]
    pub days: usize,
    #[command(flatten)]
    pub model: ModelChoice,
    /// Coordinator port on 127.0.0.1 (the dashboard and /metrics take the next one).
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
}

/// What `init local` wrote.
pub struct Scaffold {
    pub dir: PathBuf,
    pub coordinator_config: PathBuf,
    pub spec: PathBuf,
    pub participant_configs: Vec<PathBuf>,
    pub ca_cert: PathBuf,
}

pub fn run(args: LocalArgs) -> Result<()> {
    let s = scaffold(&args)?;
    let dir = s.dir.display();
    let up = match &args.dir {
        Some(_) => format!("gridfed up {dir}"),
        None => "gridfed up".to_string(),
    };
    println!("created {dir}:");
    println!(
        "  coordinator.toml, spec.toml, tls/, enrollment-token, operator-token, board-reader-token,\n  fleet/ and sites/<site>/participant.toml\n"
    );
    println!("run it all at once: {up}   (logs in {dir}/logs, Ctrl-C stops)");
    println!("or piece by piece (three terminals, or append `&`):");
    println!(
        "  gridfed coordinator serve --config {}",
        s.coordinator_config.display()
    );
    println!(
        "  GRIDFED_OPERATOR_TOKEN=$(cat {dir}/operator-token) gridfed models publish {} \\\n      --coordinator https://127.0.0.1:{} --ca-cert {}",
        s.spec.display(),
        args.port,
        s.ca_cert.display()
    );
    for p in &s.participant_configs {
        println!("  gridfed participant run --config {}", p.display());
    }
    println!(
        "\nthen: gridfed models list fleet-{} (and promote, forecast: see README \"Model registry\")",
        args.model.target
    );
    println!(
        "dashboard: http://127.0.0.1:{}/login?token=$(cat {dir}/operator-token)",
        args.port.wrapping_add(1)
    );
    Ok(())
}

pub fn scaffold(args: &LocalArgs) -> Result<Scaffold> {
    let target = args.model.target()?;
    if args.sites < 3 {
        bail!(
            "--sites {}: masked aggregation needs at least 3 sites",
            args.sites
        );
    }
    let dir = super::project_dir(args.dir.clone());
    files::create_empty_dir(&dir)?;

    // Telemetry: the operator's fleet, or a synthetic one written as a fleet directory.
    let fleet_dir = match &args.data {
        Some(data) => {
            std::path::absolute(data).with_context(|| format!("--data {}", data.display()))?
        }
        None => {
            let fleet = datasets::synth::generate_fleet(&datasets::synth::FleetConfig {
                sites: args.sites.max(3) * 2,
                days: args.days,
                ..Default::default()
            });
            let out = dir.join("fleet");
            datasets::writer::write_fleet_dir(&out, &fleet.sites, &fleet.telemetry)?;
            out
        }
    };
    let fleet = datasets::reader::read_fleet_dir(&fleet_dir)
        .with_context(|| format!("reading the fleet {}", fleet_dir.display()))?;
    let mut chosen = super::machines::sites_measuring(&fleet, target);
    chosen.truncate(args.sites);
    if chosen.len() < args.sites {
        bail!(
            "{} has {} sites measuring {}; --sites asks for {}",
            fleet_dir.display(),
            chosen.len(),
            target.as_str(),
            args.sites
        );
    }
    let weather = fleet
        .telemetry
        .iter()
        .all(|s| super::machines::has_weather(&s.telemetry));

    let tls = coordinator::tls::generate(&[])?.write(&dir.join("tls"), false)?;
    let tokens = Tokens::create(&dir)?;
    let coordinator_config = dir.join("coordinator.toml");
    files::write(
        &coordinator_config,
        &files::coordinator_toml(
            &format!("127.0.0.1:{}", args.port),
            &format!("127.0.0.1:{}", args.port.wrapping_add(1)),
            &tokens,
        ),
    )?;
    let spec = dir.join("spec.toml");
    files::write(
        &spec,
        &files::spec_toml(target.as_str(), args.model.rounds, args.sites, weather),
    )?;
    // Inside the project the fleet is referred to relatively, so the directory can be moved.
    let data_dir_setting = match &args.data {
        Some(_) => fleet_dir.display().to_string(),
        None => "../../fleet".to_string(),
    };
    let url = format!("https://127.0.0.1:{}", args.port);
    let tag = ModelChoice::federation_tag(target);
    let mut participant_configs = Vec::new();
    for site in chosen {
        let site_dir = dir.join("sites").join(site);
        std::fs::create_dir_all(&site_dir)
            .with_context(|| format!("creating {}", site_dir.display()))?;
        let path = site_dir.join("participant.toml");
        files::write(
            &path,
            &files::participant_toml(&ParticipantSettings {
                site,
                coordinator_url: &url,
                ca_cert: "../../tls/ca.pem",
                enrollment_token: &tokens.enrollment,
                federation_tag: &tag,
                target: target.as_str(),
                data_dir: &data_dir_setting,
            }),
        )?;
        participant_configs.push(path);
    }
    Ok(Scaffold {
        dir,
        coordinator_config,
        spec,
        participant_configs,
        ca_cert: tls.ca_cert,
    })
}
