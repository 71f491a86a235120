//! Compiles `proto/callers/v1/*.proto` with protox (no system `protoc`), writes the encoded
//! `FileDescriptorSet` to `$OUT_DIR/callers_descriptor.bin` and generates the tonic
//! server and client code from it.

use std::path::PathBuf;

const PROTO_ROOT: &str = "../../proto";
const PROTO_FILES: [&str; 6] = [
    "callers/v1/contacts.proto",
    "callers/v1/identification.proto",
    "callers/v1/call_notes.proto",
    "callers/v1/call_handling.proto",
    "callers/v1/changes.proto",
    "callers/v1/privacy.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTO_FILES)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("callers_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
