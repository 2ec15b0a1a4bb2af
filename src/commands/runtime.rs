//! Plumbing every networked command shares: the tokio runtime each entry point builds, and the
//! transport of an in-process federation on loopback (TLS with an ephemeral CA, or plaintext as
//! a benchmark baseline).

use anyhow::{Context, Result};
use clap::ValueEnum;
use coordinator::CoordinatorConfig;
use participant::client::CoordinatorEndpoint;
use serde::Serialize;

/// The transport of the loopback benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchTransport {
    Tls,
    Plaintext,
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Sets up the transport of an in-process federation on `addr` and returns the participants'
/// endpoint: TLS with a CA and server certificate generated in memory for this run (as
/// deployed), or, for the benchmark baseline only, plaintext.
pub fn loopback_transport(
    config: &mut CoordinatorConfig,
    addr: std::net::SocketAddr,
    tls: bool,
) -> Result<CoordinatorEndpoint> {
    if !tls {
        config.insecure_plaintext = true;
        return Ok(CoordinatorEndpoint::insecure_plaintext(&format!(
            "http://{addr}"
        ))?);
    }
    let generated = coordinator::tls::generate(&[addr.ip().to_string()])?;
    config.tls_identity = Some(generated.server);
    Ok(CoordinatorEndpoint::tls(
        &format!("https://{addr}"),
        generated.ca_cert_pem.as_bytes(),
        "ephemeral CA",
    )?)
}
