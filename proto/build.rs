//! Compiles `proto/**/*.proto` with protox (pure Rust, no `protoc` binary) and generates the
//! tonic client and server code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/gridfed/federation/v1/federation.proto",
        "proto/gridfed/registry/v1/registry.proto",
        "proto/gridfed/forecast/v1/forecast.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".gridfed.federation.v1.UploadChunk.data")
        .bytes(".gridfed.federation.v1.DownloadChunk.data")
        .bytes(".gridfed.registry.v1.ExportChunk.data")
        .compile_fds(fds)?;
    Ok(())
}
