//! Compiles `proto/**/*.proto` with protox (pure Rust, no `protoc` binary) and generates the
//! tonic client and server code.

/// Our codec: prost encoding, malformed requests answered `INVALID_ARGUMENT` (`src/codec.rs`).
const CODEC: &str = "crate::codec::StrictCodec";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/gridfed/federation/v1/federation.proto",
        "proto/gridfed/registry/v1/registry.proto",
        "proto/gridfed/forecast/v1/forecast.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    // The forecast package refers to `gridfed.federation.v1.RequestAuth`, but our modules do
    // not mirror package paths (`proto::v1`, `proto::forecast`), and an extern path suppresses
    // generating the package it names. So generate forecast first with the extern path, then
    // the other packages (which rewrites federation's file in full).
    let forecast = protox::compile([files[2]], ["proto"])?;
    tonic_prost_build::configure()
        .codec_path(CODEC)
        .extern_path(".gridfed.federation.v1", "crate::v1")
        .bytes(".gridfed.forecast.v1.FetchModelChunk.data")
        .compile_fds(forecast)?;
    let fds = protox::compile(&files[..2], ["proto"])?;
    tonic_prost_build::configure()
        .codec_path(CODEC)
        .bytes(".gridfed.federation.v1.UploadChunk.data")
        .bytes(".gridfed.federation.v1.DownloadChunk.data")
        .bytes(".gridfed.registry.v1.ExportChunk.data")
        .bytes(".gridfed.registry.v1.RepairChunk.data")
        .compile_fds(fds)?;
    Ok(())
}
