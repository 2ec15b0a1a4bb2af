//! The gridfed federation wire protocol.
//!
//! `proto/gridfed/federation/v1/federation.proto` is the single source of truth; [`v1`] is the
//! code tonic and prost generate from it at build time. Beside it live the two rules both ends
//! must implement identically: what a request signature covers ([`auth`]) and how large vectors
//! are cut into chunks and reassembled with their length and digest checked ([`chunk`]).

pub mod auth;
pub mod chunk;
pub mod codec;
pub mod faults;

/// Generated messages, client and server of `gridfed.federation.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("gridfed.federation.v1");
}

/// Generated messages, client and server of `gridfed.registry.v1` (model registry).
#[allow(clippy::all, missing_docs)]
pub mod registry {
    tonic::include_proto!("gridfed.registry.v1");
}

/// Generated messages, client and server of `gridfed.forecast.v1` (forecast service).
#[allow(clippy::all, missing_docs)]
pub mod forecast {
    tonic::include_proto!("gridfed.forecast.v1");
}

/// Largest chunk of a streamed vector, in bytes.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Largest single message either end decodes: one chunk plus headroom for the envelope, and the
/// bound for unary protocol messages.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Largest vector (in bytes) one upload or download may carry: 10,000,000 parameters at 8 bytes
/// each, plus slack for a masked encoding's header.
pub const MAX_VECTOR_BYTES: u64 = 80_000_000 + (1 << 20);

/// Fully qualified gRPC method names, as bound into signatures.
pub mod method {
    pub const JOIN: &str = "/gridfed.federation.v1.Federation/Join";
    pub const GET_TASK: &str = "/gridfed.federation.v1.Federation/GetTask";
    pub const SUBMIT_PROTOCOL: &str = "/gridfed.federation.v1.Federation/SubmitProtocol";
    pub const UPLOAD_UPDATE: &str = "/gridfed.federation.v1.Federation/UploadUpdate";
    pub const DOWNLOAD_WEIGHTS: &str = "/gridfed.federation.v1.Federation/DownloadWeights";
    pub const PUBLISH_SITE_FORECAST: &str = "/gridfed.forecast.v1.Forecast/PublishSiteForecast";
    pub const FETCH_MODEL: &str = "/gridfed.forecast.v1.Forecast/FetchModel";
    pub const QUERY_BOARD: &str = "/gridfed.forecast.v1.Forecast/QueryBoard";
}
