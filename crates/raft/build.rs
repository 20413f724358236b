//! Compiles `proto/seshat.proto` with a vendored `protoc`, so no system
//! protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with env!: a build cache shared by
    // clones at different paths must not point at another clone's files.
    let proto_dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
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
