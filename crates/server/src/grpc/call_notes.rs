//! `callers.v1.CallNoteService`: call notes and exactly-once delivery of caller messages.

use super::App;
use callers_proto::v1 as pb;
use callers_proto::v1::call_note_service_server::CallNoteService;
use tonic::{Request, Response, Status};

pub struct CallNotes(pub App);

#[tonic::async_trait]
impl CallNoteService for CallNotes {
    async fn create_call_note(
        &self,
        _request: Request<pb::CreateCallNoteRequest>,
    ) -> Result<Response<pb::CreateCallNoteResponse>, Status> {
        Err(Status::unimplemented("CreateCallNote is not implemented yet"))
    }

    async fn get_call_note(
        &self,
        _request: Request<pb::GetCallNoteRequest>,
    ) -> Result<Response<pb::CallNote>, Status> {
        Err(Status::unimplemented("GetCallNote is not implemented yet"))
    }

    async fn list_call_notes(
        &self,
        _request: Request<pb::ListCallNotesRequest>,
    ) -> Result<Response<pb::ListCallNotesResponse>, Status> {
        Err(Status::unimplemented("ListCallNotes is not implemented yet"))
    }

    async fn deliver_caller_message(
        &self,
        _request: Request<pb::DeliverCallerMessageRequest>,
    ) -> Result<Response<pb::DeliverCallerMessageResponse>, Status> {
        Err(Status::unimplemented("DeliverCallerMessage is not implemented yet"))
    }
}
