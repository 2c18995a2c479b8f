// Compiles the protobuf definitions with a pure-Rust compiler, so no system protoc is needed:
// CSI's, and the volume-modifier-for-k8s sidecar's.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    println!("cargo:rerun-if-changed=proto/modify.proto");
    let descriptors = protox::compile(["csi.proto", "modify.proto"], ["proto"])?;
    // Malformed request bytes are INVALID_ARGUMENT, not tonic-prost's INTERNAL (src/csi/codec.rs).
    tonic_prost_build::configure()
        .codec_path("crate::csi::codec::CsiCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
