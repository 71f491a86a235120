//! `callers.v1.CallNoteService`: call notes and exactly-once delivery of caller messages.

use super::{App, account, idempotency_key, request_id, same_account, valid};
use crate::{convert, error, page_token};
use callers_domain::Violations;
use callers_domain::call_note::{CallNote, Caller, NewCallNote, RawCallNote};
use callers_domain::validation::{reference, uuid};
use callers_proto::v1 as pb;
use callers_proto::v1::call_note_service_server::CallNoteService;
use callers_store::Operation;
use callers_store::call_notes::Delivery;
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use uuid::Uuid;

pub struct CallNotes(pub App);

#[tonic::async_trait]
impl CallNoteService for CallNotes {
    async fn create_call_note(
        &self,
        request: Request<pb::CreateCallNoteRequest>,
    ) -> Result<Response<pb::CreateCallNoteResponse>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let rid = request_id(&req.request_id, &mut v);
        let region = self.0.region_or_default(acc.as_ref()).await?;
        let note = match &req.call_note {
            None => {
                v.add("call_note", "is required");
                None
            }
            Some(n) => {
                same_account(
                    "call_note.account_id",
                    &n.account_id,
                    &req.account_id,
                    &mut v,
                );
                let call_time = match &n.call_time {
                    None => None,
                    Some(t) => v.check("call_note.call_time", convert::time(t)),
                };
                let raw = RawCallNote {
                    contact_id: n.contact_id.clone(),
                    employee_id: n.employee_id.clone(),
                    agent_id: n.agent_id.clone(),
                    caller: Caller {
                        first_name: n.caller_first_name.clone(),
                        last_name: n.caller_last_name.clone(),
                        company: n.caller_company.clone(),
                        number: n.caller_number.clone(),
                    },
                    subject: n.subject.clone(),
                    text: n.text.clone(),
                    call_time,
                };
                match NewCallNote::parse(&raw, &region, "call_note") {
                    Ok(n) => Some(n),
                    Err(e) => {
                        v.0.extend(e.0);
                        None
                    }
                }
            }
        };
        let (acc, note) = valid(v, acc.zip(note))?;
        let key = idempotency_key(rid, Operation::CreateCallNote, req);
        let created = self
            .0
            .store
            .create_call_note(&acc, &note, key.as_ref(), self.0.clock.now())
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::CreateCallNoteResponse {
            call_note: Some(call_note(&created.call_note)),
            contact: created
                .contact
                .as_ref()
                .map(|c| convert::contact(c, self.0.retention)),
            contact_created: created.contact_created,
        }))
    }

    async fn get_call_note(
        &self,
        request: Request<pb::GetCallNoteRequest>,
    ) -> Result<Response<pb::CallNote>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let id = v.check("call_note_id", uuid(&request.get_ref().call_note_id));
        let (acc, id) = valid(v, acc.zip(id))?;
        let note = self
            .0
            .store
            .get_call_note(&acc, id)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(call_note(&note)))
    }

    async fn list_call_notes(
        &self,
        request: Request<pb::ListCallNotesRequest>,
    ) -> Result<Response<pb::ListCallNotesResponse>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let size = v.check("page_size", page_token::page_size(req.page_size));
        let contact_id = match req.contact_id.as_str() {
            "" => None,
            s => v.check("contact_id", uuid(s)),
        };
        let employee_id = match req.employee_id.as_str() {
            "" => None,
            s => v.check("employee_id", reference(s, true)),
        };
        let query = format!(
            "notes/{}/{}/{}",
            req.account_id, req.contact_id, req.employee_id
        );
        let after = v
            .check(
                "page_token",
                page_token::decode::<(DateTime<Utc>, Uuid)>(&query, &req.page_token),
            )
            .flatten();
        let (acc, size) = valid(v, acc.zip(size))?;
        let page = self
            .0
            .store
            .list_call_notes(&acc, contact_id, employee_id.as_deref(), after, size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::ListCallNotesResponse {
            call_notes: page.call_notes.iter().map(call_note).collect(),
            next_page_token: page
                .next_after
                .map(|p| page_token::encode(&query, &p))
                .unwrap_or_default(),
        }))
    }

    async fn deliver_caller_message(
        &self,
        request: Request<pb::DeliverCallerMessageRequest>,
    ) -> Result<Response<pb::DeliverCallerMessageResponse>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let contact_id = v.check("contact_id", uuid(&req.contact_id));
        let message_id = v.check("message_id", uuid(&req.message_id));
        let call_note_id = v.check("call_note_id", uuid(&req.call_note_id));
        let agent_id = v.check("agent_id", reference(&req.agent_id, true));
        let rid = request_id(&req.request_id, &mut v);
        let delivery = contact_id
            .zip(message_id)
            .zip(call_note_id)
            .zip(agent_id)
            .map(
                |(((contact_id, message_id), call_note_id), agent_id)| Delivery {
                    contact_id,
                    message_id,
                    call_note_id,
                    agent_id,
                },
            );
        let (acc, delivery) = valid(v, acc.zip(delivery))?;
        let key = idempotency_key(rid, Operation::DeliverCallerMessage, req);
        let done = self
            .0
            .store
            .deliver_caller_message(&acc, &delivery, key.as_ref(), self.0.clock.now())
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::DeliverCallerMessageResponse {
            call_note: Some(call_note(&done.call_note)),
            contact: Some(convert::contact(&done.contact, self.0.retention)),
        }))
    }
}

fn call_note(n: &CallNote) -> pb::CallNote {
    pb::CallNote {
        account_id: n.account_id.clone(),
        call_note_id: n.call_note_id.to_string(),
        contact_id: n.contact_id.map(|c| c.to_string()).unwrap_or_default(),
        employee_id: n.employee_id.clone(),
        agent_id: n.agent_id.clone(),
        caller_first_name: n.caller.first_name.clone(),
        caller_last_name: n.caller.last_name.clone(),
        caller_company: n.caller.company.clone(),
        caller_number: n.caller.number.clone(),
        subject: n.subject.clone(),
        text: n.text.clone(),
        call_time: Some(convert::timestamp(n.call_time)),
        create_time: Some(convert::timestamp(n.create_time)),
        deliveries: n
            .deliveries
            .iter()
            .map(|d| pb::MessageDelivery {
                message_id: d.message_id.to_string(),
                text: d.text.clone(),
                deliver_time: Some(convert::timestamp(d.deliver_time)),
                agent_id: d.agent_id.clone(),
            })
            .collect(),
    }
}
