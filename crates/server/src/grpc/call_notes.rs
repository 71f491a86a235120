//! `callers.v1.CallNoteService`: call notes and exactly-once delivery of caller messages.

use super::App;
use crate::convert::call_notes::{
    CreateCallNote, DeliverCallerMessage, GetCallNote, ListCallNotes, call_note, created, delivered,
};
use crate::error;
use callers_proto::v1 as pb;
use callers_proto::v1::call_note_service_server::CallNoteService;
use tonic::{Request, Response, Status};

pub struct CallNotes(pub App);

#[tonic::async_trait]
impl CallNoteService for CallNotes {
    async fn create_call_note(
        &self,
        request: Request<pb::CreateCallNoteRequest>,
    ) -> Result<Response<pb::CreateCallNoteResponse>, Status> {
        let cmd = self.0.with_region(&request, CreateCallNote::parse).await?;
        let (key, now) = (cmd.key.as_ref(), self.0.clock.now());
        let hashes = self
            .0
            .number_hashes(&cmd.account, cmd.note.caller_e164.as_ref());
        let note = self
            .0
            .store
            .create_call_note(&cmd.account, &cmd.note, &hashes, key, now)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(created(&note, self.0.retention)))
    }

    async fn get_call_note(
        &self,
        request: Request<pb::GetCallNoteRequest>,
    ) -> Result<Response<pb::CallNote>, Status> {
        let cmd: GetCallNote = self.0.command(&request)?;
        let note = self
            .0
            .store
            .get_call_note(&cmd.account, cmd.call_note_id)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(call_note(&note)))
    }

    async fn list_call_notes(
        &self,
        request: Request<pb::ListCallNotesRequest>,
    ) -> Result<Response<pb::ListCallNotesResponse>, Status> {
        let cmd: ListCallNotes = self.0.command(&request)?;
        let employee = cmd.employee_id.as_deref();
        let page = self
            .0
            .store
            .list_call_notes(&cmd.account, cmd.contact_id, employee, cmd.after, cmd.size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(cmd.response(&page)))
    }

    async fn deliver_caller_message(
        &self,
        request: Request<pb::DeliverCallerMessageRequest>,
    ) -> Result<Response<pb::DeliverCallerMessageResponse>, Status> {
        let cmd: DeliverCallerMessage = self.0.command(&request)?;
        let now = self.0.clock.now();
        let done = self
            .0
            .store
            .deliver_caller_message(&cmd.account, &cmd.delivery, cmd.key.as_ref(), now)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(delivered(&done, self.0.retention)))
    }
}
