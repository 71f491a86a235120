//! `CallNoteService` requests as commands, and call notes back.

use super::{contact, idempotency_key, request_id, resource, same_account, time, timestamp};
use crate::page_token;
use callers_domain::call_note::{CallNote, Caller, NewCallNote, RawCallNote};
use callers_domain::phone::Region;
use callers_domain::retention::Retention;
use callers_domain::validation::{reference, uuid};
use callers_domain::{AccountId, Violations};
use callers_proto::v1 as pb;
use callers_store::call_notes::{Created, Delivered, Delivery, NotePage, NotePosition};
use callers_store::{IdempotencyKey, Operation};
use uuid::Uuid;

pub struct CreateCallNote {
    pub account: AccountId,
    pub note: NewCallNote,
    pub key: Option<IdempotencyKey>,
}

impl CreateCallNote {
    /// The caller's number is read in `region`, the account's.
    pub fn parse(req: &pb::CreateCallNoteRequest, region: &Region) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let request_id = request_id(&req.request_id, &mut v);
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
                let call_time = n
                    .call_time
                    .as_ref()
                    .and_then(|t| v.check("call_note.call_time", time(t)));
                let raw = raw_call_note(n, call_time);
                v.absorb(NewCallNote::parse(&raw, region, "call_note"))
            }
        };
        let (account, note) = v.finish(account.zip(note))?;
        let key = idempotency_key(request_id, Operation::CreateCallNote, req);
        Ok(Self { account, note, key })
    }
}

fn raw_call_note(
    n: &pb::CallNote,
    call_time: Option<chrono::DateTime<chrono::Utc>>,
) -> RawCallNote {
    RawCallNote {
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
    }
}

pub struct GetCallNote {
    pub account: AccountId,
    pub call_note_id: Uuid,
}

impl TryFrom<&pb::GetCallNoteRequest> for GetCallNote {
    type Error = Violations;

    fn try_from(req: &pb::GetCallNoteRequest) -> Result<Self, Violations> {
        let (account, call_note_id) = resource(&req.account_id, "call_note_id", &req.call_note_id)?;
        Ok(Self {
            account,
            call_note_id,
        })
    }
}

pub struct ListCallNotes {
    pub account: AccountId,
    pub contact_id: Option<Uuid>,
    pub employee_id: Option<String>,
    pub after: Option<NotePosition>,
    pub size: usize,
    /// What the page token belongs to.
    query: String,
}

impl TryFrom<&pb::ListCallNotesRequest> for ListCallNotes {
    type Error = Violations;

    fn try_from(req: &pb::ListCallNotesRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
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
        let after = v.check("page_token", page_token::decode(&query, &req.page_token));
        let (account, size) = v.finish(account.zip(size))?;
        Ok(Self {
            account,
            contact_id,
            employee_id,
            after: after.flatten(),
            size,
            query,
        })
    }
}

impl ListCallNotes {
    pub fn response(&self, page: &NotePage) -> pb::ListCallNotesResponse {
        pb::ListCallNotesResponse {
            call_notes: page.call_notes.iter().map(call_note).collect(),
            next_page_token: page
                .next_after
                .map(|p| page_token::encode(&self.query, &p))
                .unwrap_or_default(),
        }
    }
}

pub struct DeliverCallerMessage {
    pub account: AccountId,
    pub delivery: Delivery,
    pub key: Option<IdempotencyKey>,
}

impl TryFrom<&pb::DeliverCallerMessageRequest> for DeliverCallerMessage {
    type Error = Violations;

    fn try_from(req: &pb::DeliverCallerMessageRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let contact_id = v.check("contact_id", uuid(&req.contact_id));
        let message_id = v.check("message_id", uuid(&req.message_id));
        let call_note_id = v.check("call_note_id", uuid(&req.call_note_id));
        let agent_id = v.check("agent_id", reference(&req.agent_id, true));
        let request_id = request_id(&req.request_id, &mut v);
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
        let (account, delivery) = v.finish(account.zip(delivery))?;
        let key = idempotency_key(request_id, Operation::DeliverCallerMessage, req);
        Ok(Self {
            account,
            delivery,
            key,
        })
    }
}

pub fn created(c: &Created, retention: Retention) -> pb::CreateCallNoteResponse {
    pb::CreateCallNoteResponse {
        call_note: Some(call_note(&c.call_note)),
        contact: c.contact.as_ref().map(|c| contact(c, retention)),
        contact_created: c.contact_created,
    }
}

pub fn delivered(d: &Delivered, retention: Retention) -> pb::DeliverCallerMessageResponse {
    pb::DeliverCallerMessageResponse {
        call_note: Some(call_note(&d.call_note)),
        contact: Some(contact(&d.contact, retention)),
    }
}

pub fn call_note(n: &CallNote) -> pb::CallNote {
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
        call_time: Some(timestamp(n.call_time)),
        create_time: Some(timestamp(n.create_time)),
        deliveries: n
            .deliveries
            .iter()
            .map(|d| pb::MessageDelivery {
                message_id: d.message_id.to_string(),
                text: d.text.clone(),
                deliver_time: Some(timestamp(d.deliver_time)),
                agent_id: d.agent_id.clone(),
            })
            .collect(),
        redact_time: n.redact_time.map(timestamp),
    }
}
