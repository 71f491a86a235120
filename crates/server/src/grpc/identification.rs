//! `callers.v1.IdentificationService`: who is calling?

use super::App;
use crate::convert::identification::IdentifyCaller;
use crate::error;
use callers_domain::call_counts::CallOutcome;
use callers_proto::v1 as pb;
use callers_proto::v1::identification_service_server::IdentificationService;
use tonic::{Request, Response, Status};

pub struct Identification(pub App);

#[tonic::async_trait]
impl IdentificationService for Identification {
    async fn identify_caller(
        &self,
        request: Request<pb::IdentifyCallerRequest>,
    ) -> Result<Response<pb::IdentifyCallerResponse>, Status> {
        let cmd: IdentifyCaller = self.0.command(&request)?;
        let (employee, number) = (&cmd.employee_id, &cmd.caller_number);
        let (name, max, region) = (&cmd.caller_name, cmd.max_results, &self.0.default_region);
        let now = self.0.clock.now();
        let mut found = self
            .0
            .store
            .identify_call(&cmd.account, employee, number, name, max, region, now)
            .await
            .map_err(error::from_store)?;
        // A suppressed caller (an erasure with `suppress`) is shown as nobody: one more
        // statement, only where privacy keys are configured and the call has a number.
        let hashes = self.0.number_hashes(&cmd.account, found.number.as_ref());
        let suppressed = self
            .0
            .store
            .is_suppressed(&cmd.account, &hashes)
            .await
            .map_err(error::from_store)?;
        if suppressed {
            found.ranking = Default::default();
        }
        let outcome = CallOutcome::of(found.number.is_some(), found.own_number, &found.ranking);
        let calls = &self.0.calls;
        calls.record(cmd.account.as_str(), employee, now, outcome);
        let measured = calls.measured(&self.0.store, &cmd.account, employee, now);
        let mut response = cmd.response(found, measured.as_ref(), self.0.retention);
        response.suppressed = suppressed;
        Ok(Response::new(response))
    }
}
