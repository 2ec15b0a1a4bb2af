//! The text of the files `gridfed init` writes: one source for the local project and for the
//! separate-machine scaffolds, commented so an operator can change them without the docs open.

use std::path::Path;

use anyhow::{Context, Result};

/// 32 random bytes as hex: enrollment, operator and board reader tokens.
pub fn token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for tokens: {e}"))?;
    Ok(hex::encode(bytes))
}

pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Creates `dir`, refusing one that holds anything: init never overwrites keys or tokens.
pub fn create_empty_dir(dir: &Path) -> Result<()> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        anyhow::bail!(
            "{} exists and is not empty: choose a new directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The secrets of one coordinator, each also written to its own file for scripts.
pub struct Tokens {
    pub enrollment: String,
    pub operator: String,
    pub board_reader: String,
}

impl Tokens {
    /// Fresh tokens, written as `enrollment-token`, `operator-token`, `board-reader-token`.
    pub fn create(dir: &Path) -> Result<Self> {
        let tokens = Self {
            enrollment: token()?,
            operator: token()?,
            board_reader: token()?,
        };
        write(
            &dir.join("enrollment-token"),
            &format!("{}\n", tokens.enrollment),
        )?;
        write(
            &dir.join("operator-token"),
            &format!("{}\n", tokens.operator),
        )?;
        write(
            &dir.join("board-reader-token"),
            &format!("{}\n", tokens.board_reader),
        )?;
        Ok(tokens)
    }
}

/// coordinator.toml serving gRPC on `listen` and the dashboard/metrics on `http_listen`.
pub fn coordinator_toml(listen: &str, http_listen: &str, tokens: &Tokens) -> String {
    format!(
        "# gridfed coordinator (docs/federation.md \"coordinator.toml\"). Relative paths are\n\
         # resolved beside this file.\n\
         data_dir = \"coordinator-data\"\n\
         listen = \"{listen}\"                       # gRPC (TLS) for participants, modelers, markets\n\
         metrics_listen = \"{http_listen}\"   # /metrics (Prometheus) and the dashboard at /\n\
         enrollment_tokens = [\"{enrollment}\"]   # give to site operators\n\
         operator_tokens = [\"{operator}\"]        # publish, promote, export models\n\
         board_reader_tokens = [\"{board_reader}\"]   # market engines: every site's board forecasts\n\
         # revoked = [\"<participant id>\"]   # refuse a participant from now on\n\
         # long_poll_ms = 20000\n\
         federation = []   # models come from the registry: gridfed models publish spec.toml\n\n\
         [tls]\ncert = \"tls/server.pem\"\nkey = \"tls/server.key\"\n\n\
         # [storage]   # default: embedded redb in data_dir\n\
         # backend = \"postgres\"\n\
         # url = \"postgres://gridfed:secret@db.example:5432/gridfed\"\n\n\
         # [limits]\n\
         # max_connections = 4096\n\
         # max_inflight_upload_mib = 1024\n\
         # upload_idle_timeout_s = 30\n",
        enrollment = tokens.enrollment,
        operator = tokens.operator,
        board_reader = tokens.board_reader,
    )
}

/// A registry model spec for `target` that federates `min_participants` sites per round.
pub fn spec_toml(target: &str, rounds: u64, min_participants: usize, weather: bool) -> String {
    let features = if weather {
        ""
    } else {
        "features = []                    # the sites' telemetry has no weather forecast columns\n"
    };
    format!(
        "# A registry model spec (README \"Model registry and forecasts\"); publish it with\n\
         # `gridfed models publish spec.toml`. Participants join it by `federation_tag`.\n\
         name = \"fleet-{target}\"\n\
         tag = \"fleet-{target}\"\n\
         target = \"{target}\"\n\
         sector = \"residential\"\n\
         context = 168                    # hours of history a forecast reads\n\
         horizon = 24                     # hours ahead\n\
         {features}\
         protection = \"masked\"           # SecAgg+; \"encrypted\" for threshold RLWE\n\
         rounds = {rounds}\n\n\
         [architecture]\nhidden = [64]\n\n\
         [training]\n\
         min_participants = {min_participants}              # masked aggregation needs at least 3\n\
         local_epochs = 1\n\n\
         [deadlines]\nupload_s = 120\n\n\
         # [privacy]   # site-level differential privacy (docs/privacy.md)\n\
         # clip = 1.0\n\
         # noise_multiplier = 1.1\n\
         # epsilon = 8.0\n",
    )
}

/// What one participant.toml says.
pub struct ParticipantSettings<'a> {
    pub site: &'a str,
    pub coordinator_url: &'a str,
    /// As written into the file (relative to it, or absolute).
    pub ca_cert: &'a str,
    pub enrollment_token: &'a str,
    pub federation_tag: &'a str,
    pub target: &'a str,
    /// The fleet directory as written into the file.
    pub data_dir: &'a str,
}

pub fn participant_toml(p: &ParticipantSettings<'_>) -> String {
    format!(
        "# gridfed participant for site {site} (docs/federation.md \"participant.toml\").\n\
         # Relative paths are resolved beside this file. Raw telemetry never leaves this machine.\n\
         coordinator = \"{url}\"\n\
         ca_cert = {ca:?}\n\
         key_file = \"site.key\"                 # created at first run; identifies this site\n\
         enrollment_token = \"{token}\"\n\
         site_label = \"{site}\"\n\
         federation_tag = \"{tag}\"\n\
         personalized_model_dir = \"personalized\"   # the site's fine-tuned copy\n\n\
         [data]\ndir = {data:?}\nsite_id = \"{site}\"\ntarget = \"{target}\"\n\
         # resolution = \"1h\"\n\
         # test_fraction = 0.2\n\n\
         # [limits]\n\
         # threads = 1                 # cores local training may use\n\
         # max_round_seconds = 600     # skip a round whose training takes longer\n\
         # max_epsilon = 8.0           # refuse DP rounds past this privacy loss\n",
        site = p.site,
        url = p.coordinator_url,
        ca = p.ca_cert,
        token = p.enrollment_token,
        tag = p.federation_tag,
        target = p.target,
        data = p.data_dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each file with every commented option switched on: the comments must name real
    /// settings with valid values, so an operator can uncomment them as they stand.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn tokens() -> Tokens {
        Tokens {
            enrollment: "e".repeat(64),
            operator: "o".repeat(64),
            board_reader: "b".repeat(64),
        }
    }

    #[test]
    fn scaffolded_files_parse_as_written_and_with_every_option_uncommented() {
        let coordinator = coordinator_toml("0.0.0.0:7400", "127.0.0.1:7401", &tokens());
        for text in [coordinator.clone(), uncommented(&coordinator)] {
            let parsed = coordinator::config::CoordinatorConfig::from_toml(&text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(parsed.board_reader_tokens, vec!["b".repeat(64)]);
        }
        assert!(
            uncommented(&coordinator).contains("backend = \"postgres\""),
            "the storage example was switched on"
        );
        for weather in [true, false] {
            let spec = spec_toml("pv", 5, 4, weather);
            for text in [spec.clone(), uncommented(&spec)] {
                let parsed = coordinator::registry::ModelSpec::from_toml(&text)
                    .unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert_eq!(parsed.rounds, 5);
            }
        }
        let participant = participant_toml(&ParticipantSettings {
            site: "site-7",
            coordinator_url: "https://coordinator.example:7400",
            ca_cert: "ca.pem",
            enrollment_token: "token-123456",
            federation_tag: "fleet-pv",
            target: "pv",
            data_dir: "/srv/telemetry with space",
        });
        for text in [participant.clone(), uncommented(&participant)] {
            let parsed = participant::ParticipantConfig::from_toml(&text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(parsed.data.site_id, "site-7");
            assert_eq!(
                parsed.data.dir,
                std::path::PathBuf::from("/srv/telemetry with space")
            );
        }
        assert_eq!(
            participant::ParticipantConfig::from_toml(&uncommented(&participant))
                .unwrap()
                .limits
                .max_epsilon,
            Some(8.0)
        );
    }
}
