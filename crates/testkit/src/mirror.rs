//! A CRM's copy of one account, kept from the change feed exactly as `changes.proto` tells a
//! consumer to: the recovery procedure to start, then every change applied in order, the
//! cursor saved with it. Every change applied is checked to follow the one before (gap-free,
//! never twice), and [`Mirror::assert_matches`] compares the copy with the account's lists
//! field by field.

use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_proto::v1::call_note_service_client::CallNoteServiceClient;
use callers_proto::v1::change_service_client::ChangeServiceClient;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use pb::change::Resource;
use std::collections::BTreeMap;
use tonic::transport::Channel;
use tonic::{Code, Status};

#[derive(Debug, Clone, Default)]
pub struct Mirror {
    pub account: String,
    /// The cursor of the last change applied (or of the recovery).
    pub cursor: String,
    pub contacts: BTreeMap<String, pb::Contact>,
    pub notes: BTreeMap<String, pb::CallNote>,
    pub settings: Option<pb::CallHandling>,
    /// The undelivered caller messages, by message id.
    pub undelivered: BTreeMap<String, pb::UndeliveredMessage>,
    /// Every change applied, in order.
    pub applied: Vec<pb::Change>,
}

/// The number a cursor stands for; the tests may know what the contract calls opaque.
pub fn seq(cursor: &str) -> i64 {
    if cursor.is_empty() {
        0
    } else {
        cursor.parse().expect("a change cursor")
    }
}

impl Mirror {
    /// The documented recovery: the cursor first, then everything from the lists.
    pub async fn sync(channel: &Channel, account: &str) -> Result<Mirror, Status> {
        let cursor = ChangeServiceClient::new(channel.clone())
            .get_change_cursor(pb::GetChangeCursorRequest {
                account_id: account.into(),
            })
            .await?
            .into_inner()
            .cursor;
        let (contacts, notes, settings, undelivered) = read_account(channel, account).await?;
        Ok(Mirror {
            account: account.into(),
            cursor,
            contacts: contacts
                .into_iter()
                .map(|c| (c.contact_id.clone(), c))
                .collect(),
            notes: notes
                .into_iter()
                .map(|n| (n.call_note_id.clone(), n))
                .collect(),
            settings,
            undelivered: undelivered
                .into_iter()
                .map(|m| (m.message_id.clone(), m))
                .collect(),
            applied: Vec::new(),
        })
    }

    /// Applies one change: upserts and deletes keyed by the resource's id. Panics when the
    /// change does not follow the last one applied.
    pub fn apply(&mut self, c: &pb::Change) {
        assert_eq!(
            seq(&c.cursor),
            seq(&self.cursor) + 1,
            "account {}: change {} after {}: missing, repeated or out of order",
            self.account,
            c.cursor,
            self.cursor
        );
        match &c.resource {
            Some(Resource::Contact(x)) => {
                self.contacts.insert(x.contact_id.clone(), x.clone());
            }
            Some(Resource::CallNote(n)) => {
                self.notes.insert(n.call_note_id.clone(), n.clone());
            }
            Some(Resource::CallHandling(s)) => self.settings = Some(s.clone()),
            Some(Resource::UndeliveredMessage(m)) => {
                self.undelivered.insert(m.message_id.clone(), m.clone());
            }
            None => {}
        }
        if c.r#type == pb::ChangeType::UndeliveredMessageRemoved as i32 {
            self.undelivered.remove(&c.message_id);
        }
        if c.r#type == pb::ChangeType::ContactDeleted as i32 {
            self.contacts.remove(&c.contact_id);
            // The notes stay and lose their link in the same change.
            for n in self.notes.values_mut() {
                if n.contact_id == c.contact_id {
                    n.contact_id.clear();
                }
            }
        }
        if c.r#type == pb::ChangeType::CallNoteDeleted as i32 {
            self.notes.remove(&c.call_note_id);
        }
        self.cursor = c.cursor.clone();
        self.applied.push(c.clone());
    }

    /// `ListChanges` until caught up.
    pub async fn catch_up(&mut self, channel: &Channel) -> Result<(), Status> {
        let mut client = ChangeServiceClient::new(channel.clone());
        loop {
            let page = client
                .list_changes(pb::ListChangesRequest {
                    account_id: self.account.clone(),
                    cursor: self.cursor.clone(),
                    page_size: 37,
                })
                .await?
                .into_inner();
            for c in &page.changes {
                self.apply(c);
            }
            assert_eq!(page.next_cursor, self.cursor);
            if page.caught_up {
                return Ok(());
            }
        }
    }

    /// Follows `WatchChanges` from the saved cursor until the stream ends (OK on shutdown or
    /// at its age) or breaks; returns how it ended. `stop` ends it early once it holds.
    pub async fn watch(
        &mut self,
        channel: &Channel,
        mut stop: impl FnMut(&Mirror) -> bool,
    ) -> Result<(), Status> {
        let mut stream = ChangeServiceClient::new(channel.clone())
            .watch_changes(pb::WatchChangesRequest {
                account_id: self.account.clone(),
                cursor: self.cursor.clone(),
            })
            .await?
            .into_inner();
        while let Some(message) = stream.message().await? {
            for c in &message.changes {
                self.apply(c);
            }
            assert_eq!(
                message.cursor, self.cursor,
                "a message's cursor is its last"
            );
            if stop(self) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The mirror equals what the account's reads return now, field by field.
    pub async fn assert_matches(&self, channel: &Channel) {
        let (contacts, notes, settings, undelivered) =
            read_account(channel, &self.account).await.unwrap();
        let undelivered: BTreeMap<_, _> = undelivered
            .into_iter()
            .map(|m| (m.message_id.clone(), m))
            .collect();
        assert_eq!(
            self.undelivered, undelivered,
            "account {}: the undelivered messages",
            self.account
        );
        let contacts: BTreeMap<_, _> = contacts
            .into_iter()
            .map(|c| (c.contact_id.clone(), c))
            .collect();
        let notes: BTreeMap<_, _> = notes
            .into_iter()
            .map(|n| (n.call_note_id.clone(), n))
            .collect();
        assert_eq!(
            contacts.keys().collect::<Vec<_>>(),
            self.contacts.keys().collect::<Vec<_>>(),
            "account {}: the contacts",
            self.account
        );
        for (id, c) in &contacts {
            assert_eq!(
                &self.contacts[id], c,
                "account {}: contact {id}",
                self.account
            );
        }
        assert_eq!(
            notes.keys().collect::<Vec<_>>(),
            self.notes.keys().collect::<Vec<_>>(),
            "account {}: the call notes",
            self.account
        );
        for (id, n) in &notes {
            assert_eq!(
                &self.notes[id], n,
                "account {}: call note {id}",
                self.account
            );
        }
        assert_eq!(
            self.settings, settings,
            "account {}: settings",
            self.account
        );
    }
}

type Account = (
    Vec<pb::Contact>,
    Vec<pb::CallNote>,
    Option<pb::CallHandling>,
    Vec<pb::UndeliveredMessage>,
);

/// Every item of a paged list: `page` reads one page for a token and returns its items and the
/// next token (empty on the last page).
async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, Status>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (more, next) = page(token).await?;
        items.extend(more);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
}

/// Every contact, call note and undelivered message of the account and its settings, page by
/// page.
pub async fn read_account(channel: &Channel, account: &str) -> Result<Account, Status> {
    let contacts_client = ContactServiceClient::new(channel.clone());
    let contacts = all_pages(|page_token| {
        let mut client = contacts_client.clone();
        let request = pb::ListContactsRequest {
            account_id: account.into(),
            page_size: 500,
            page_token,
            ..Default::default()
        };
        async move {
            let page = client.list_contacts(request).await?.into_inner();
            Ok((page.contacts, page.next_page_token))
        }
    })
    .await?;
    let notes_client = CallNoteServiceClient::new(channel.clone());
    let notes = all_pages(|page_token| {
        let mut client = notes_client.clone();
        let request = pb::ListCallNotesRequest {
            account_id: account.into(),
            page_size: 500,
            page_token,
            ..Default::default()
        };
        async move {
            let page = client.list_call_notes(request).await?.into_inner();
            Ok((page.call_notes, page.next_page_token))
        }
    })
    .await?;
    let settings = match CallHandlingServiceClient::new(channel.clone())
        .get_call_handling(pb::GetCallHandlingRequest {
            account_id: account.into(),
        })
        .await
    {
        Ok(s) => Some(s.into_inner()),
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => return Err(s),
    };
    let undelivered = all_pages(|page_token| {
        let mut client = contacts_client.clone();
        let request = pb::ListUndeliveredMessagesRequest {
            account_id: account.into(),
            page_size: 500,
            page_token,
            ..Default::default()
        };
        async move {
            let page = client
                .list_undelivered_messages(request)
                .await?
                .into_inner();
            Ok((page.undelivered_messages, page.next_page_token))
        }
    })
    .await?;
    Ok((contacts, notes, settings, undelivered))
}
