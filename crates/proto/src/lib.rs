//! The `callers.v1` gRPC contract: messages, servers and clients generated from `proto/callers/v1`.

/// The `callers.v1` package: messages, enums, and one `*_server` and `*_client` module per service.
pub mod v1 {
    tonic::include_proto!("callers.v1");
}

/// The encoded `google.protobuf.FileDescriptorSet` of the contract, with its imports (the
/// well-known types) and source info, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("callers_descriptor");

#[cfg(test)]
mod tests {
    use prost::Message as _;

    #[test]
    fn descriptor_set_holds_the_four_services() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("FILE_DESCRIPTOR_SET decodes");
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.service
                    .iter()
                    .map(move |service| format!("{package}.{}", service.name()))
            })
            .collect();
        for expected in [
            "callers.v1.ContactService",
            "callers.v1.IdentificationService",
            "callers.v1.CallNoteService",
            "callers.v1.CallHandlingService",
        ] {
            assert!(
                services.iter().any(|s| s == expected),
                "{expected} missing from {services:?}"
            );
        }
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/timestamp.proto"),
            "well-known imports are included"
        );
    }
}
