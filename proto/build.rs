//! Compiles `proto/**/*.proto` with protox (pure Rust, no `protoc` binary) and generates the
//! tonic client and server code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/gridfed/federation/v1/federation.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".gridfed.federation.v1.UploadChunk.data")
        .bytes(".gridfed.federation.v1.DownloadChunk.data")
        .compile_fds(fds)?;
    Ok(())
}
