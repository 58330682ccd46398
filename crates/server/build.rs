//! Compiles `proto/tidepool/admin/v1/admin.proto` with protox (a Rust protobuf compiler:
//! no system `protoc` needed) into tonic server and client code, plus the descriptor set
//! gRPC reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/tidepool/admin/v1/admin.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("admin_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
