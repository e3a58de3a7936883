//! Generates the KServe v2 gRPC code (`proto/grpc_predict_v2.proto`) for the
//! stand-in predictor. protox parses the proto in Rust, so a machine without
//! `protoc` builds sluice as well as one with it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        // The predictor serves the service from its own hyper server, and
        // clients (tests, benches) bring their own channel: no tonic transport.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
