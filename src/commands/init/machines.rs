//! `gridfed init coordinator` and `gridfed init participant`: the two halves of a deployment
//! on separate machines. The coordinator's operator hands each site operator three things:
//! the URL, `tls/ca.pem` and the enrollment token; the site's scaffold checks them and its
//! telemetry before writing anything.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use super::ModelChoice;
use super::files::{self, ParticipantSettings, Tokens};

#[derive(Args)]
pub struct CoordinatorArgs {
    /// Directory to create (must not exist or be empty).
    pub dir: PathBuf,
    /// DNS name or IP address participants reach the coordinator by; repeat for several (the
    /// TLS certificate names these, localhost and 127.0.0.1). Default: this machine's host
    /// name.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// gRPC port, on every interface (the dashboard and /metrics take the next one, on
    /// 127.0.0.1 only until you change `metrics_listen`).
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
    /// Sites each round needs (masked aggregation needs at least 3).
    #[arg(long, default_value_t = 3)]
    pub min_participants: usize,
    /// The sites' telemetry has no weather forecast columns: the spec reads none.
    #[arg(long)]
    pub no_weather: bool,
    #[command(flatten)]
    pub model: ModelChoice,
}

#[derive(Args)]
pub struct ParticipantArgs {
    /// Directory to create (must not exist or be empty).
    pub dir: PathBuf,
    /// The coordinator's URL, e.g. https://coordinator.example:7400.
    #[arg(long)]
    pub coordinator: String,
    /// Enrollment token from the coordinator's operator (or --token-file).
    #[arg(
        long,
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the enrollment token (keeps it out of shell history).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The coordinator's CA certificate (its tls/ca.pem); copied into DIR. Required for https.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Fleet directory holding this site's telemetry (`sites.json` + Parquet, as written by
    /// `gridfed datasets import`); it stays where it is and is never sent.
    #[arg(long)]
    pub data: PathBuf,
    /// The site in --data to train on (default: the only one measuring --target).
    #[arg(long)]
    pub site: Option<String>,
    /// Forecast target: load, pv or net_load.
    #[arg(long, default_value = "load")]
    pub target: String,
    /// Federation to join (the model spec's `tag`; default fleet-TARGET as `init coordinator`
    /// writes it).
    #[arg(long)]
    pub federation: Option<String>,
}

/// Whether a site's telemetry carries the weather forecast the default features read.
pub(super) fn has_weather(telemetry: &datasets::SiteTelemetry) -> bool {
    telemetry
        .columns()
        .iter()
        .any(|(name, values)| *name == "temperature_forecast_c" && values.is_some())
}

/// The fleet's sites that have a column for `target`, in the fleet's order.
pub(super) fn sites_measuring(
    fleet: &datasets::reader::FleetData,
    target: datasets::Target,
) -> Vec<&str> {
    fleet
        .telemetry
        .iter()
        .filter(|s| target.values(&s.telemetry).is_some())
        .map(|s| s.telemetry.site_id.as_str())
        .collect()
}

/// This machine's host name, when it is one a certificate can carry.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&buf[..end]).ok()?.to_string();
    certificate_name_ok(&name).then_some(name)
}

fn certificate_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

pub fn run_coordinator(args: CoordinatorArgs) -> Result<()> {
    let target = args.model.target()?;
    ensure!(
        args.min_participants >= 3,
        "--min-participants {}: masked aggregation needs at least 3 sites",
        args.min_participants
    );
    // The coordinator's own machine reaches it on loopback too (`gridfed up` publishes the
    // spec there, the dashboard is there), so the certificate always names it.
    let mut hosts = if args.hosts.is_empty() {
        host_name().into_iter().collect()
    } else {
        args.hosts.clone()
    };
    for local in coordinator::tls::DEFAULT_HOSTS {
        if !hosts.iter().any(|h| h == local) {
            hosts.push(local.to_string());
        }
    }
    // Checked (names a certificate can carry) before the directory is created.
    let generated = coordinator::tls::generate(&hosts)?;
    let dir = &args.dir;
    files::create_empty_dir(dir)?;
    generated.write(&dir.join("tls"), false)?;
    let tokens = Tokens::create(dir)?;
    files::write(
        &dir.join("coordinator.toml"),
        &files::coordinator_toml(
            &format!("0.0.0.0:{}", args.port),
            &format!("127.0.0.1:{}", args.port.wrapping_add(1)),
            &tokens,
        ),
    )?;
    files::write(
        &dir.join("spec.toml"),
        &files::spec_toml(
            target.as_str(),
            args.model.rounds,
            args.min_participants,
            !args.no_weather,
        ),
    )?;

    let d = dir.display();
    let url = format!("https://{}:{}", hosts[0], args.port);
    println!(
        "created {d}: coordinator.toml, spec.toml, tls/ (certificate for {}), enrollment-token, operator-token, board-reader-token\n",
        hosts.join(", ")
    );
    println!(
        "start it:   gridfed up {d}   (or: gridfed coordinator serve --config {d}/coordinator.toml)"
    );
    println!(
        "publish:    GRIDFED_OPERATOR_TOKEN=$(cat {d}/operator-token) gridfed models publish {d}/spec.toml \\\n              --coordinator {url} --ca-cert {d}/tls/ca.pem   (gridfed up does this)"
    );
    println!(
        "\ngive each site operator {d}/tls/ca.pem and {d}/enrollment-token; on the site's machine:"
    );
    println!(
        "  gridfed init participant site --coordinator {url} --ca-cert ca.pem \\\n      --token-file enrollment-token --data FLEET_DIR --site SITE_ID --target {}",
        target.as_str()
    );
    println!("  gridfed participant run --config site/participant.toml");
    println!(
        "\nmarket engines read forecasts with {d}/board-reader-token; the dashboard is on 127.0.0.1:{}",
        args.port.wrapping_add(1)
    );
    Ok(())
}

/// The site `--site` names, or the fleet's only one measuring the target; errors say which
/// sites there are.
fn choose_site(
    fleet: &datasets::reader::FleetData,
    data: &Path,
    site: Option<&str>,
    target: datasets::Target,
) -> Result<String> {
    let measuring = sites_measuring(fleet, target);
    match site {
        Some(site) => {
            ensure!(
                fleet.telemetry.iter().any(|s| s.telemetry.site_id == site),
                "--site {site}: {} has no such site (it has: {})",
                data.display(),
                site_list(fleet.telemetry.iter().map(|s| s.telemetry.site_id.as_str()))
            );
            ensure!(
                measuring.contains(&site),
                "--site {site}: its telemetry in {} has no {} column for --target {}",
                data.display(),
                target.column(),
                target.as_str()
            );
            Ok(site.to_string())
        }
        None => match measuring.as_slice() {
            [only] => Ok(only.to_string()),
            [] => bail!(
                "{} has no site measuring {} (column {})",
                data.display(),
                target.as_str(),
                target.column()
            ),
            several => bail!(
                "{} has {} sites measuring {}: name one with --site ({})",
                data.display(),
                several.len(),
                target.as_str(),
                site_list(several.iter().copied())
            ),
        },
    }
}

fn site_list<'a>(sites: impl Iterator<Item = &'a str>) -> String {
    let sites: Vec<&str> = sites.collect();
    if sites.len() > 8 {
        format!("{}, ... {} in all", sites[..8].join(", "), sites.len())
    } else {
        sites.join(", ")
    }
}

pub fn run_participant(args: ParticipantArgs) -> Result<()> {
    let target: datasets::Target = args
        .target
        .parse()
        .map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("--token-file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("pass --token or --token-file"),
    };
    ensure!(!token.is_empty(), "the enrollment token is empty");
    // Everything is checked before DIR is created: a failed scaffold leaves nothing behind.
    let ca_pem = match &args.ca_cert {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("--ca-cert {}", path.display()))?)
        }
        None => None,
    };
    match &ca_pem {
        Some(pem) => {
            participant::client::CoordinatorEndpoint::tls(&args.coordinator, pem, "--ca-cert")?;
        }
        None if args.coordinator.starts_with("https://") => bail!(
            "--coordinator {} is TLS: pass --ca-cert with the coordinator's tls/ca.pem",
            args.coordinator
        ),
        None => {
            participant::client::CoordinatorEndpoint::insecure_plaintext(&args.coordinator)?;
        }
    }
    ensure!(
        args.data.is_dir(),
        "--data {}: expected a fleet directory (sites.json + Parquet); `gridfed datasets import` writes one from meter CSVs",
        args.data.display()
    );
    let data = std::path::absolute(&args.data)
        .with_context(|| format!("--data {}", args.data.display()))?;
    let fleet = datasets::reader::read_fleet_dir(&data)
        .with_context(|| format!("reading --data {}", data.display()))?;
    let site = choose_site(&fleet, &data, args.site.as_deref(), target)?;
    let tag = args
        .federation
        .clone()
        .unwrap_or_else(|| ModelChoice::federation_tag(target));
    let ca_setting = if ca_pem.is_some() { "ca.pem" } else { "" };
    let mut text = files::participant_toml(&ParticipantSettings {
        site: &site,
        coordinator_url: &args.coordinator,
        ca_cert: ca_setting,
        enrollment_token: &token,
        federation_tag: &tag,
        target: target.as_str(),
        data_dir: &data.display().to_string(),
    });
    if ca_pem.is_none() {
        text = text.replace(
            "ca_cert = \"\"\n",
            "insecure_plaintext = true   # tests only\n",
        );
    }
    // The daemon's own parser has the last word on what was written.
    participant::config::ParticipantConfig::from_toml(&text)
        .context("the scaffolded participant.toml does not parse (a gridfed defect)")?;

    let dir = &args.dir;
    files::create_empty_dir(dir)?;
    if let Some(pem) = &ca_pem {
        std::fs::write(dir.join("ca.pem"), pem)
            .with_context(|| format!("writing {}", dir.join("ca.pem").display()))?;
    }
    let config = dir.join("participant.toml");
    files::write(&config, &text)?;
    let series = fleet
        .telemetry
        .iter()
        .find(|s| s.telemetry.site_id == site)
        .map(|s| s.telemetry.timestamps.len())
        .unwrap_or(0);
    println!(
        "created {}: participant.toml for site {site} ({series} {} rows in {}), federation {tag}",
        dir.display(),
        target.as_str(),
        data.display()
    );
    println!(
        "run it: gridfed participant run --config {}",
        config.display()
    );
    println!(
        "check it first (config and telemetry; no network): gridfed participant check --config {}",
        config.display()
    );
    Ok(())
}
