//! Compiles the Kubernetes protos in `proto/` with protox (pure Rust: no `protoc` needed)
//! and generates the tonic clients and servers (the clients are what the tests' kubelet
//! stand-in speaks).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/deviceplugin.proto",
        "proto/pluginregistration.proto",
        "proto/dra.proto",
        "proto/podresources.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
