//! `gridfed init DIR`: a ready-to-run federation on one machine, the way `flwr new` scaffolds a
//! project: TLS material, coordinator.toml with fresh tokens, a registry model spec, a fleet of
//! site telemetry (synthetic, or the operator's own fleet directory) and one participant.toml
//! per site, then the three commands that run it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args)]
pub struct InitArgs {
    /// Directory to create (must not exist or be empty).
    pub dir: PathBuf,
    /// Sites (one participant each); masked aggregation needs at least 3.
    #[arg(long, default_value_t = 3)]
    pub participants: usize,
    /// Use this fleet directory (`sites.json` + Parquet) instead of a synthetic one; its first
    /// `--participants` sites that measure the target become the participants.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Days of synthetic telemetry per site.
    #[arg(long, default_value_t = 120)]
    pub days: usize,
    /// Forecast target: load, pv or net_load.
    #[arg(long, default_value = "load")]
    pub target: String,
    /// Federated rounds of the model spec.
    #[arg(long, default_value_t = 20)]
    pub rounds: u64,
    /// Coordinator port on 127.0.0.1.
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
}

/// 32 random bytes as hex: enrollment and operator tokens.
fn token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for tokens: {e}"))?;
    Ok(hex::encode(bytes))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// What `init` wrote, for the caller and the tests.
pub struct Scaffold {
    pub coordinator_config: PathBuf,
    pub spec: PathBuf,
    pub participant_configs: Vec<PathBuf>,
    pub ca_cert: PathBuf,
}

pub fn run(args: InitArgs) -> Result<()> {
    let s = scaffold(&args)?;
    let dir = args.dir.display();
    println!("created {dir}:");
    println!(
        "  coordinator.toml, spec.toml, tls/, operator-token, board-reader-token, fleet/ and sites/<site>/participant.toml\n"
    );
    println!("run it all at once: gridfed up {dir}   (logs in {dir}/logs, Ctrl-C stops)");
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
        args.target
    );
    println!(
        "dashboard: http://127.0.0.1:{}/login?token=$(cat {dir}/operator-token)",
        args.port.wrapping_add(1)
    );
    Ok(())
}

/// Writes the project; see the module docs.
pub fn scaffold(args: &InitArgs) -> Result<Scaffold> {
    let target: datasets::Target = args
        .target
        .parse()
        .map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    if args.participants < 3 {
        bail!(
            "--participants {}: masked aggregation needs at least 3 sites",
            args.participants
        );
    }
    let dir = &args.dir;
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: choose a new directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    // Telemetry: the operator's fleet, or a synthetic one written as a fleet directory.
    let fleet_dir = match &args.data {
        Some(data) => {
            std::path::absolute(data).with_context(|| format!("--data {}", data.display()))?
        }
        None => {
            let fleet = datasets::synth::generate_fleet(&datasets::synth::FleetConfig {
                sites: args.participants.max(3) * 2,
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
    let chosen: Vec<&str> = fleet
        .telemetry
        .iter()
        .filter(|s| target.values(&s.telemetry).is_some())
        .map(|s| s.telemetry.site_id.as_str())
        .take(args.participants)
        .collect();
    if chosen.len() < args.participants {
        bail!(
            "{} has {} sites measuring {}; --participants asks for {}",
            fleet_dir.display(),
            chosen.len(),
            target.as_str(),
            args.participants
        );
    }
    let has_weather = fleet.telemetry.iter().all(|s| {
        s.telemetry
            .columns()
            .iter()
            .any(|(name, values)| *name == "temperature_forecast_c" && values.is_some())
    });

    let tls = coordinator::tls::generate(&[])?.write(&dir.join("tls"), false)?;
    let enrollment = token()?;
    let operator = token()?;
    write(&dir.join("operator-token"), &format!("{operator}\n"))?;
    // For market engines reading the forecast board (every site's forecasts).
    let board_reader = token()?;
    write(
        &dir.join("board-reader-token"),
        &format!("{board_reader}\n"),
    )?;
    let coordinator_config = dir.join("coordinator.toml");
    write(
        &coordinator_config,
        &format!(
            "# gridfed coordinator (docs/federation.md \"coordinator.toml\")\n\
             data_dir = \"coordinator-data\"\n\
             listen = \"127.0.0.1:{port}\"\n\
             metrics_listen = \"127.0.0.1:{metrics}\"\n\
             enrollment_tokens = [\"{enrollment}\"]\n\
             operator_tokens = [\"{operator}\"]\n\
             board_reader_tokens = [\"{board_reader}\"]   # market engines: every site's board forecasts\n\
             federation = []   # models come from the registry: gridfed models publish spec.toml\n\n\
             [tls]\ncert = \"tls/server.pem\"\nkey = \"tls/server.key\"\n",
            port = args.port,
            metrics = args.port.wrapping_add(1),
        ),
    )?;
    let spec = dir.join("spec.toml");
    let features = if has_weather {
        ""
    } else {
        "features = []                    # the fleet has no weather forecast columns\n"
    };
    write(
        &spec,
        &format!(
            "# A registry model spec (README \"Model registry and forecasts\")\n\
             name = \"fleet-{target}\"\n\
             tag = \"fleet-{target}\"\n\
             target = \"{target}\"\n\
             sector = \"residential\"\n\
             context = 168\n\
             horizon = 24\n\
             {features}\
             protection = \"masked\"\n\
             rounds = {rounds}\n\n\
             [architecture]\nhidden = [64]\n\n\
             [training]\nmin_participants = {participants}\nlocal_epochs = 1\n\n\
             [deadlines]\nupload_s = 120\n",
            target = target.as_str(),
            rounds = args.rounds,
            participants = args.participants,
        ),
    )?;
    // Inside the project the fleet is referred to relatively, so the directory can be moved.
    let data_dir_setting = match &args.data {
        Some(_) => fleet_dir.clone(),
        None => PathBuf::from("../../fleet"),
    };
    let mut participant_configs = Vec::new();
    for site in chosen {
        let site_dir = dir.join("sites").join(site);
        std::fs::create_dir_all(&site_dir)?;
        let path = site_dir.join("participant.toml");
        // Paths are resolved beside this file.
        write(
            &path,
            &format!(
                "# gridfed participant for site {site} (docs/federation.md \"participant.toml\")\n\
                 coordinator = \"https://127.0.0.1:{port}\"\n\
                 ca_cert = \"../../tls/ca.pem\"\n\
                 key_file = \"site.key\"\n\
                 enrollment_token = \"{enrollment}\"\n\
                 site_label = \"{site}\"\n\
                 federation_tag = \"fleet-{target}\"\n\
                 personalized_model_dir = \"personalized\"\n\n\
                 [data]\ndir = {fleet:?}\nsite_id = \"{site}\"\ntarget = \"{target}\"\n",
                port = args.port,
                target = target.as_str(),
                fleet = data_dir_setting.display().to_string(),
            ),
        )?;
        participant_configs.push(path);
    }
    Ok(Scaffold {
        coordinator_config,
        spec,
        participant_configs,
        ca_cert: tls.ca_cert,
    })
}
