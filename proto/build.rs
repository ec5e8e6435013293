//! Compiles the `.proto` files with the vendored `protoc`, so no system install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);

    let mut config = prost_build::Config::new();
    // Every `bytes` field decodes as `bytes::Bytes`: decoding from a `Bytes`
    // buffer then slices it instead of copying (see proto/sls/log.proto).
    config.bytes(["."]);
    config.compile_protos(&["sls/log.proto"], &["."])?;
    println!("cargo:rerun-if-changed=sls/log.proto");

    // The control API: messages and the tonic client and server.
    // Trail's APIs (control, tags) and the node-to-node service.
    let protos = [
        "trail/v1/control.proto",
        "trail/v1/tags.proto",
        "trail/cluster/v1/peer.proto",
    ];
    tonic_prost_build::configure().compile_protos(&protos, &["."])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
