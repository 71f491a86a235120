//! `callers.v1.PrivacyService`: erasure, suppression, subject-access export and account
//! offboarding. Every request needs the `privacy` (or `admin`) scope (`super::Tenant`).

use super::App;
use crate::convert::privacy::{
    DeleteAccountData, EraseCaller, ExportCallerData, LiftSuppression, account_deletion, erased,
};
use crate::{auth, error};
use callers_proto::v1 as pb;
use callers_proto::v1::privacy_service_server::PrivacyService;
use callers_store::privacy::{DeletionBudget, Erasure, Export};
use std::time::Duration;
use tonic::{Request, Response, Status};

pub struct Privacy {
    pub app: App,
    /// How long one `DeleteAccountData` call deletes before it answers: half the request
    /// timeout, so the answer (and the counts) always arrive.
    pub deletion_time: Duration,
}

#[tonic::async_trait]
impl PrivacyService for Privacy {
    async fn erase_caller(
        &self,
        request: Request<pb::EraseCallerRequest>,
    ) -> Result<Response<pb::EraseCallerResponse>, Status> {
        let keys = &self.app.privacy_keys;
        let cmd = self
            .app
            .with_region(&request, |r, region| EraseCaller::parse(r, region, keys))
            .await?;
        if cmd.suppress && keys.is_empty() {
            return Err(error::privacy_keys_missing());
        }
        let erasure = Erasure {
            region: self.app.region(Some(&cmd.account)).await?,
            subject: cmd.subject,
            suppress: cmd.suppress,
            number_hashes: cmd.number_hashes,
            token_name: auth::token_name(&request)?.to_string(),
        };
        let done = self
            .app
            .store
            .erase_caller(
                &cmd.account,
                &erasure,
                cmd.key.as_ref(),
                self.app.clock.now(),
            )
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(erased(&done)))
    }

    async fn lift_suppression(
        &self,
        request: Request<pb::LiftSuppressionRequest>,
    ) -> Result<Response<pb::LiftSuppressionResponse>, Status> {
        let keys = &self.app.privacy_keys;
        let cmd = self
            .app
            .with_region(&request, |r, region| {
                LiftSuppression::parse(r, region, keys)
            })
            .await?;
        if keys.is_empty() {
            return Err(error::privacy_keys_missing());
        }
        let token = auth::token_name(&request)?;
        let lifted = self
            .app
            .store
            .lift_suppression(
                &cmd.account,
                &cmd.number_hashes,
                &token,
                self.app.clock.now(),
            )
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::LiftSuppressionResponse { lifted }))
    }

    async fn export_caller_data(
        &self,
        request: Request<pb::ExportCallerDataRequest>,
    ) -> Result<Response<pb::ExportCallerDataResponse>, Status> {
        let keys = &self.app.privacy_keys;
        let cmd = self
            .app
            .with_region(&request, |r, region| {
                ExportCallerData::parse(r, region, keys)
            })
            .await?;
        let region = self.app.region(Some(&cmd.account)).await?;
        let token = auth::token_name(&request)?;
        let export = Export {
            subject: &cmd.subject,
            number_hashes: &cmd.number_hashes,
            region: &region,
            token_name: &token,
            after: cmd.after,
            limit: cmd.size,
        };
        let page = self
            .app
            .store
            .export_caller_data(&cmd.account, &export, self.app.clock.now())
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(cmd.response(&page, self.app.retention)))
    }

    async fn delete_account_data(
        &self,
        request: Request<pb::DeleteAccountDataRequest>,
    ) -> Result<Response<pb::DeleteAccountDataResponse>, Status> {
        let cmd: DeleteAccountData = self.app.command(&request)?;
        let token = auth::token_name(&request)?;
        let budget = DeletionBudget {
            rows_per_batch: 1_000,
            time: self.deletion_time,
        };
        let done = self
            .app
            .store
            .delete_account_data(
                &cmd.account,
                cmd.dry_run,
                &token,
                budget,
                self.app.clock.now(),
            )
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(account_deletion(&done)))
    }
}
