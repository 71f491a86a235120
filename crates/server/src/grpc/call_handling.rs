//! `callers.v1.CallHandlingService`: the settings that decide whether callers can be found.

use super::App;
use crate::convert::call_handling::{
    self, CheckCallerRecognition, GetCallHandling, UpdateCallHandling,
};
use crate::error;
use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_server::CallHandlingService;
use tonic::{Request, Response, Status};

pub struct CallHandlings(pub App);

#[tonic::async_trait]
impl CallHandlingService for CallHandlings {
    async fn get_call_handling(
        &self,
        request: Request<pb::GetCallHandlingRequest>,
    ) -> Result<Response<pb::CallHandling>, Status> {
        let cmd: GetCallHandling = self.0.command(&request)?;
        let settings = self
            .0
            .store
            .get_call_handling(&cmd.account)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(call_handling::settings(&settings)))
    }

    async fn update_call_handling(
        &self,
        request: Request<pb::UpdateCallHandlingRequest>,
    ) -> Result<Response<pb::CallHandling>, Status> {
        let (region, now) = (&self.0.default_region, self.0.clock.now());
        let cmd = self.0.parse(&request, UpdateCallHandling::parser(region))?;
        let settings = self
            .0
            .store
            .update_call_handling(&cmd.account, &cmd.patch, cmd.etag(), region, now)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(call_handling::settings(&settings)))
    }

    async fn check_caller_recognition(
        &self,
        request: Request<pb::CheckCallerRecognitionRequest>,
    ) -> Result<Response<pb::RecognitionStatus>, Status> {
        let cmd: CheckCallerRecognition = self.0.command(&request)?;
        let now = self.0.clock.now();
        let (settings, counts) = self
            .0
            .store
            .recognition_inputs(&cmd.account, &cmd.employee_id, now)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(cmd.response(settings.as_ref(), counts)))
    }
}
