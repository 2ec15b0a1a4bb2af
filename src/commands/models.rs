//! `gridfed models ...`: the model registry of a running coordinator, over gRPC.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use coordinator::registry::{VersionManifest, write_export};
use participant::client::{CoordinatorEndpoint, open_channel};
use proto::registry::registry_client::RegistryClient;
use proto::registry::{self as pb, export_chunk};
use tonic::transport::Channel;

use super::train::Format;

/// Where the coordinator is and how its TLS certificate is checked.
#[derive(Args, Clone)]
pub struct Remote {
    /// Coordinator gRPC address: https:// (TLS, the default) or http:// (a coordinator run with
    /// insecure_plaintext, for tests).
    #[arg(long, default_value = "https://localhost:7400")]
    pub coordinator: String,
    /// CA certificate the coordinator's certificate must chain to (`ca.pem` from `gridfed
    /// coordinator init-tls`); default: the GRIDFED_CA_CERT environment variable.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

impl Remote {
    /// A channel to the coordinator, over TLS for an https:// address.
    pub async fn connect(&self) -> Result<Channel> {
        let url = &self.coordinator;
        let endpoint = if url.starts_with("http://") {
            eprintln!("warning: plaintext connection to {url} (no TLS)");
            CoordinatorEndpoint::insecure_plaintext(url)?
        } else {
            let path = match &self.ca_cert {
                Some(path) => path.clone(),
                None => PathBuf::from(std::env::var("GRIDFED_CA_CERT").context(
                    "no CA certificate for the TLS connection: pass --ca-cert or set GRIDFED_CA_CERT",
                )?),
            };
            let pem = std::fs::read(&path)
                .with_context(|| format!("--ca-cert {}: cannot read", path.display()))?;
            CoordinatorEndpoint::tls(url, &pem, &format!("--ca-cert {}", path.display()))?
        };
        Ok(open_channel(&endpoint).await?)
    }
}

/// Where the coordinator is and how to prove we are its operator.
#[derive(Args, Clone)]
pub struct Connection {
    #[command(flatten)]
    pub remote: Remote,
    /// Operator token (default: the GRIDFED_OPERATOR_TOKEN environment variable).
    #[arg(long)]
    pub token: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Validate a TOML model spec and publish it: its federation starts accepting participants.
    Publish {
        spec: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// List published models, or the versions and aliases of one.
    List {
        model: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// One version's signed manifest (NAME, NAME@VERSION, NAME@ALIAS, NAME@ID-PREFIX).
    Show {
        reference: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Two versions' metrics and lineage side by side.
    Compare {
        first: String,
        second: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Point an alias at a version.
    Promote {
        reference: String,
        #[arg(long, default_value = "production")]
        alias: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Point an alias back at the version it named before its last promotion.
    Rollback {
        model: String,
        #[arg(long, default_value = "production")]
        alias: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Write weights.safetensors, manifest.json and the signed version.json into a directory.
    Export {
        reference: String,
        #[arg(long)]
        out: PathBuf,
        /// The coordinator's Ed25519 key (hex) to verify against; default: the key the
        /// coordinator sends (trust on first use).
        #[arg(long)]
        coordinator_key: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

pub fn run(cmd: ModelsCommand) -> Result<()> {
    super::runtime::runtime()?.block_on(run_async(cmd))
}

/// A registry client that adds the operator token to every call.
struct Operator {
    client: RegistryClient<Channel>,
    token: String,
}

impl Operator {
    async fn connect(c: &Connection) -> Result<Self> {
        let token = match &c.token {
            Some(t) => t.clone(),
            None => std::env::var("GRIDFED_OPERATOR_TOKEN")
                .context("no operator token: pass --token or set GRIDFED_OPERATOR_TOKEN")?,
        };
        let client = RegistryClient::new(c.remote.connect().await?)
            .max_decoding_message_size(proto::MAX_MESSAGE_BYTES);
        Ok(Self { client, token })
    }

    /// Sends `message` with the operator token through `rpc` and returns the reply.
    async fn call<Req, Resp>(
        &mut self,
        message: Req,
        rpc: impl AsyncFnOnce(
            &mut RegistryClient<Channel>,
            tonic::Request<Req>,
        ) -> Result<tonic::Response<Resp>, tonic::Status>,
    ) -> Result<Resp> {
        let request = self.request(message)?;
        Ok(rpc(&mut self.client, request)
            .await
            .map_err(status)?
            .into_inner())
    }

    fn request<T>(&self, message: T) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token)
                .parse()
                .context("the operator token is not a valid header value")?,
        );
        Ok(request)
    }
}

fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

fn manifest_of(info: &pb::VersionInfo) -> Result<VersionManifest> {
    serde_json::from_str(&info.manifest_json).context("the coordinator sent a malformed manifest")
}

async fn run_async(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::Publish { spec, connection } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            // Validate locally first: the same errors, without a round trip.
            coordinator::registry::ModelSpec::from_toml(&text)
                .with_context(|| format!("invalid model spec {}", spec.display()))?;
            let mut op = Operator::connect(&connection).await?;
            let r = op
                .call(pb::PublishSpecRequest { spec_toml: text }, async |c, r| {
                    c.publish_spec(r).await
                })
                .await?;
            if connection.format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({"model": r.model, "tag": r.tag, "parameters": r.parameters, "spec": serde_json::from_str::<serde_json::Value>(&r.spec_json)?})
                );
            } else {
                println!(
                    "published `{}` ({} parameters); participants join with federation tag `{}`",
                    r.model, r.parameters, r.tag
                );
            }
        }
        ModelsCommand::List {
            model: None,
            connection,
        } => {
            let mut op = Operator::connect(&connection).await?;
            let models = op
                .call(pb::ListModelsRequest {}, async |c, r| {
                    c.list_models(r).await
                })
                .await?
                .models;
            if connection.format == Format::Json {
                let list: Vec<serde_json::Value> = models
                    .iter()
                    .map(|m| {
                        serde_json::json!({"name": m.name, "tag": m.tag, "versions": m.versions,
                            "published_unix_ms": m.published_unix_ms,
                            "spec": serde_json::from_str::<serde_json::Value>(&m.spec_json).ok()})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                println!("{:<28} {:<28} {:>8}  published", "model", "tag", "versions");
                for m in models {
                    println!(
                        "{:<28} {:<28} {:>8}  {}",
                        m.name,
                        m.tag,
                        m.versions,
                        utc(m.published_unix_ms)
                    );
                }
            }
        }
        ModelsCommand::List {
            model: Some(model),
            connection,
        } => {
            let mut op = Operator::connect(&connection).await?;
            let r = op
                .call(pb::ListVersionsRequest { model }, async |c, r| {
                    c.list_versions(r).await
                })
                .await?;
            let manifests = r
                .versions
                .iter()
                .map(manifest_of)
                .collect::<Result<Vec<_>>>()?;
            if connection.format == Format::Json {
                let versions: Vec<serde_json::Value> = manifests
                    .iter()
                    .zip(&r.versions)
                    .map(|(m, v)| serde_json::json!({"manifest": m, "aliases": v.aliases}))
                    .collect();
                let aliases: Vec<serde_json::Value> = r
                    .aliases
                    .iter()
                    .map(|a| serde_json::json!({"alias": a.alias, "version": a.version, "previous": a.previous}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"model": r.model, "versions": versions, "aliases": aliases,
                    "coordinator_key": hex::encode(&r.coordinator_key)})
                );
            } else {
                println!(
                    "{:>7}  {:<12}  {:<20} {:>6} {:>12} {:<9} {:>10} {:>9}  aliases",
                    "version",
                    "id",
                    "created (UTC)",
                    "round",
                    "participants",
                    "protect",
                    "update_l2",
                    "fed nMAE"
                );
                for (m, v) in manifests.iter().zip(&r.versions) {
                    let c = &m.content;
                    println!(
                        "{:>7}  {:<12}  {:<20} {:>6} {:>12} {:<9} {:>10} {:>9}  {}",
                        c.version,
                        &m.id[..12],
                        utc(c.created_unix_ms),
                        c.lineage.round,
                        c.lineage.participants,
                        c.lineage.protection.name(),
                        c.metrics
                            .get("update_l2")
                            .map(|x| format!("{x:.4}"))
                            .unwrap_or_default(),
                        c.metrics
                            .get("federated_nmae")
                            .map(|x| format!("{:.2}%", 100.0 * x))
                            .unwrap_or_else(|| "-".into()),
                        v.aliases.join(",")
                    );
                }
            }
        }
        ModelsCommand::Show {
            reference,
            connection,
        } => {
            let mut op = Operator::connect(&connection).await?;
            let info = op
                .call(
                    pb::ShowVersionRequest {
                        model_ref: reference,
                    },
                    async |c, r| c.show_version(r).await,
                )
                .await?;
            let m = manifest_of(&info)?;
            if connection.format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({"manifest": m, "aliases": info.aliases})
                );
            } else {
                print_manifest(&m, &info.aliases);
            }
        }
        ModelsCommand::Compare {
            first,
            second,
            connection,
        } => {
            let mut op = Operator::connect(&connection).await?;
            let mut both = Vec::new();
            for reference in [first, second] {
                let info = op
                    .call(
                        pb::ShowVersionRequest {
                            model_ref: reference,
                        },
                        async |c, r| c.show_version(r).await,
                    )
                    .await?;
                both.push(manifest_of(&info)?);
            }
            print_comparison(&both[0], &both[1], connection.format)?;
        }
        ModelsCommand::Promote {
            reference,
            alias,
            connection,
        } => {
            let mut op = Operator::connect(&connection).await?;
            let a = op
                .call(
                    pb::PromoteRequest {
                        model_ref: reference,
                        alias,
                    },
                    async |c, r| c.promote(r).await,
                )
                .await?;
            print_alias(&a, connection.format);
        }
        ModelsCommand::Rollback {
            model,
            alias,
            connection,
        } => {
            let mut op = Operator::connect(&connection).await?;
            let a = op
                .call(pb::RollbackRequest { model, alias }, async |c, r| {
                    c.rollback(r).await
                })
                .await?;
            print_alias(&a, connection.format);
        }
        ModelsCommand::Export {
            reference,
            out,
            coordinator_key,
            connection,
        } => {
            let mut op = Operator::connect(&connection).await?;
            let request = op.request(pb::ExportRequest {
                model_ref: reference,
            })?;
            let mut stream = op
                .client
                .export_version(request)
                .await
                .map_err(status)?
                .into_inner();
            let Some(pb::ExportChunk {
                part: Some(export_chunk::Part::Header(header)),
            }) = stream.message().await.map_err(status)?
            else {
                bail!("the export stream did not start with a header");
            };
            let mut reassembly = proto::chunk::Reassembly::new(
                header.length,
                &header.sha256,
                proto::MAX_VECTOR_BYTES,
                None,
            )?;
            while let Some(chunk) = stream.message().await.map_err(status)? {
                match chunk.part {
                    Some(export_chunk::Part::Data(data)) => reassembly.push(&data)?,
                    _ => bail!("unexpected part in the export stream"),
                }
            }
            let weights = proto::chunk::bytes_to_f32(&reassembly.finish()?)?;
            let manifest: VersionManifest = serde_json::from_str(&header.manifest_json)?;
            let key: [u8; 32] = match &coordinator_key {
                Some(hex_key) => hex::decode(hex_key)
                    .ok()
                    .and_then(|k| k.try_into().ok())
                    .context("--coordinator-key must be 64 hex digits")?,
                None => header
                    .coordinator_key
                    .as_slice()
                    .try_into()
                    .context("coordinator key is not 32 bytes")?,
            };
            write_export(&manifest, &weights, &key, &out)
                .with_context(|| format!("exporting to {}", out.display()))?;
            if connection.format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({"dir": out, "model": manifest.content.model,
                    "version": manifest.content.version, "id": manifest.id, "coordinator_key": hex::encode(key)})
                );
            } else {
                println!(
                    "{}@{} (id {}) verified under coordinator key {} and written to {}",
                    manifest.content.model,
                    manifest.content.version,
                    &manifest.id[..12],
                    hex::encode(key),
                    out.display()
                );
            }
        }
    }
    Ok(())
}

fn utc(unix_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| unix_ms.to_string())
}

fn print_alias(a: &pb::AliasInfo, format: Format) {
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

fn print_manifest(m: &VersionManifest, aliases: &[String]) {
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

fn print_comparison(a: &VersionManifest, b: &VersionManifest, format: Format) -> Result<()> {
    let names: BTreeSet<&String> = a
        .content
        .metrics
        .keys()
        .chain(b.content.metrics.keys())
        .collect();
    if format == Format::Json {
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
            "ids": [a.id, b.id], "metrics": metrics})
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
    Ok(())
}
