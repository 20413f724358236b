//! Compiles `proto/seshat.proto` with a vendored `protoc`, so no system
//! protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../proto")
        .canonicalize()?;
    let proto = proto_dir.join("seshat.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-changed=build.rs");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    config.btree_map(["."]);
    tonic_prost_build::configure().compile_with_config(config, &[proto], &[proto_dir])?;
    Ok(())
}
