//! `callers.v1.CallHandlingService`: the settings that decide whether callers can be found.

use super::App;
use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_server::CallHandlingService;
use tonic::{Request, Response, Status};

pub struct CallHandlings(pub App);

#[tonic::async_trait]
impl CallHandlingService for CallHandlings {
    async fn get_call_handling(
        &self,
        _request: Request<pb::GetCallHandlingRequest>,
    ) -> Result<Response<pb::CallHandling>, Status> {
        Err(Status::unimplemented(
            "GetCallHandling is not implemented yet",
        ))
    }

    async fn update_call_handling(
        &self,
        _request: Request<pb::UpdateCallHandlingRequest>,
    ) -> Result<Response<pb::CallHandling>, Status> {
        Err(Status::unimplemented(
            "UpdateCallHandling is not implemented yet",
        ))
    }

    async fn check_caller_recognition(
        &self,
        _request: Request<pb::CheckCallerRecognitionRequest>,
    ) -> Result<Response<pb::RecognitionStatus>, Status> {
        Err(Status::unimplemented(
            "CheckCallerRecognition is not implemented yet",
        ))
    }
}
