//! `gridfed models ...`: the model registry of a running coordinator, over gRPC.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use coordinator::registry::{VersionManifest, write_export};
use participant::client::{CoordinatorEndpoint, open_channel};
use proto::registry::registry_client::RegistryClient;
use proto::registry::{self as pb, export_chunk};
use tonic::transport::Channel;

use super::models_view::{print_alias, print_comparison, print_manifest, utc};
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
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Validate a TOML model spec and publish it: its federation starts accepting participants.
    Publish {
        /// The model spec (TOML; README "Model registry and forecasts").
        spec: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// List published models, or the versions and aliases of one.
    List {
        /// A model name: its versions and aliases (default: every model).
        model: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// One version's signed manifest (NAME, NAME@VERSION, NAME@ALIAS, NAME@ID-PREFIX).
    Show {
        /// The version: NAME (its production alias), NAME@VERSION, NAME@ALIAS or NAME@ID-PREFIX
        /// (8+ hex digits).
        reference: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Two versions' metrics and lineage side by side.
    Compare {
        /// The first version (NAME@VERSION, NAME@ALIAS or NAME@ID-PREFIX).
        first: String,
        /// The second version, compared with the first.
        second: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Point an alias at a version.
    Promote {
        /// The version: NAME (its production alias), NAME@VERSION, NAME@ALIAS or NAME@ID-PREFIX
        /// (8+ hex digits).
        reference: String,
        /// The alias (e.g. production, staging).
        #[arg(long, default_value = "production")]
        alias: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Point an alias back at the version it named before its last promotion.
    Rollback {
        /// The model whose alias moves back.
        model: String,
        /// The alias (e.g. production, staging).
        #[arg(long, default_value = "production")]
        alias: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Write weights.safetensors, manifest.json and the signed version.json into a directory.
    Export {
        /// The version: NAME (its production alias), NAME@VERSION, NAME@ALIAS or NAME@ID-PREFIX
        /// (8+ hex digits).
        reference: String,
        /// Directory to write (created).
        #[arg(long)]
        out: PathBuf,
        /// The coordinator's Ed25519 key (hex) to verify against; default: the key the
        /// coordinator sends (trust on first use).
        #[arg(long)]
        coordinator_key: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Restore a version whose weight artifact is damaged on the coordinator (listed as
    /// DAMAGED, refused with DataLoss) from an export or backup of the same version: accepted
    /// only if the weights hash to the digest that version committed.
    Repair {
        /// The model whose version is repaired (the weights' digest names the version).
        model: String,
        /// A directory written by `gridfed models export` (its weights.safetensors).
        #[arg(long)]
        from: PathBuf,
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

/// The signed manifests of every version of `model`, oldest first, and its aliases as
/// `alias=vN`.
pub(super) async fn list_versions(
    connection: &Connection,
    model: &str,
) -> Result<(Vec<VersionManifest>, Vec<String>)> {
    let mut op = Operator::connect(connection).await?;
    let r = op
        .call(
            pb::ListVersionsRequest {
                model: model.to_string(),
            },
            async |c, r| c.list_versions(r).await,
        )
        .await?;
    let mut manifests = r
        .versions
        .iter()
        .map(manifest_of)
        .collect::<Result<Vec<_>>>()?;
    manifests.sort_by_key(|m| m.content.version);
    let aliases = r
        .aliases
        .iter()
        .map(|a| format!("{}=v{}", a.alias, a.version))
        .collect();
    Ok((manifests, aliases))
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
                    .map(|(m, v)| serde_json::json!({"manifest": m, "aliases": v.aliases, "damage": (!v.damage.is_empty()).then_some(&v.damage)}))
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
                    if let Some(ratio) = c
                        .metrics
                        .get("federated_nmae_vs_best_earlier")
                        .filter(|r| **r > coordinator::registry::DIVERGENCE_FACTOR)
                    {
                        println!(
                            "         DIVERGING: federated nMAE {ratio:.1}x the best earlier \
                             version's; do not promote (lower server_momentum or learning_rate)"
                        );
                    }
                    if !v.damage.is_empty() {
                        println!(
                            "         DAMAGED: {}; refused until `gridfed models repair {} --from EXPORT_DIR`",
                            v.damage, c.model
                        );
                    }
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
                    serde_json::json!({"manifest": m, "aliases": info.aliases, "damage": (!info.damage.is_empty()).then_some(&info.damage)})
                );
            } else {
                print_manifest(&m, &info.aliases);
                if !info.damage.is_empty() {
                    println!(
                        "DAMAGED      {} (refused with DataLoss until repaired)",
                        info.damage
                    );
                }
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
        ModelsCommand::Repair {
            model,
            from,
            connection,
        } => {
            let artifact = models::ModelArtifact::load(&from)
                .with_context(|| format!("--from {}: not a model export", from.display()))?;
            let bytes = proto::chunk::f32_to_bytes(artifact.parameters());
            let header = pb::RepairChunk {
                part: Some(pb::repair_chunk::Part::Header(pb::RepairHeader {
                    model,
                    length: bytes.len() as u64,
                    sha256: proto::chunk::sha256(&bytes).to_vec(),
                })),
            };
            let chunks: Vec<pb::RepairChunk> = std::iter::once(header)
                .chain(
                    proto::chunk::split(bytes.into()).map(|data| pb::RepairChunk {
                        part: Some(pb::repair_chunk::Part::Data(data)),
                    }),
                )
                .collect();
            let mut op = Operator::connect(&connection).await?;
            let request = op.request(tokio_stream::iter(chunks))?;
            let r = op
                .client
                .repair_version(request)
                .await
                .map_err(status)?
                .into_inner();
            if connection.format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({"model": r.model, "versions": r.versions, "signed": r.signed})
                );
            } else {
                println!(
                    "{}: weight artifact restored for version(s) {:?}; {} manifest(s) signed",
                    r.model, r.versions, r.signed
                );
            }
        }
    }
    Ok(())
}
