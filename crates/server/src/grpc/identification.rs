//! `callers.v1.IdentificationService`: who is calling?

use super::App;
use callers_proto::v1 as pb;
use callers_proto::v1::identification_service_server::IdentificationService;
use tonic::{Request, Response, Status};

pub struct Identification(pub App);

#[tonic::async_trait]
impl IdentificationService for Identification {
    async fn identify_caller(
        &self,
        _request: Request<pb::IdentifyCallerRequest>,
    ) -> Result<Response<pb::IdentifyCallerResponse>, Status> {
        Err(Status::unimplemented(
            "IdentifyCaller is not implemented yet",
        ))
    }
}
