//! Generates the prost messages and tonic client/server from
//! `proto/worker.proto`, with the protoc shipped by `protoc-bin-vendored`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/worker.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(&["proto/worker.proto"], &["proto"])?;
    Ok(())
}
