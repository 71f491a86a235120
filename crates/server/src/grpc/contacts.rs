//! `callers.v1.ContactService`.

use super::App;
use crate::convert::contacts::{
    CreateContact, DeleteContact, GetContact, ListContacts, ListExpiringContacts,
    ListUndeliveredMessages, SearchContacts, UpdateContact,
};
use crate::{convert, error};
use callers_proto::v1 as pb;
use callers_proto::v1::contact_service_server::ContactService;
use tonic::{Request, Response, Status};

pub struct Contacts(pub App);

#[tonic::async_trait]
impl ContactService for Contacts {
    async fn create_contact(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let cmd = self.0.with_region(&request, CreateContact::parse).await?;
        let (key, now) = (cmd.key.as_ref(), self.0.clock.now());
        let contact = self
            .0
            .store
            .create_contact(&cmd.account, &cmd.contact, key, now)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(convert::contact(&contact, self.0.retention)))
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let cmd: GetContact = self.0.command(&request)?;
        let contact = self
            .0
            .store
            .get_contact(&cmd.account, cmd.contact_id)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(convert::contact(&contact, self.0.retention)))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let cmd = self.0.with_region(&request, UpdateContact::parse).await?;
        let now = self.0.clock.now();
        let contact = self
            .0
            .store
            .update_contact(&cmd.account, cmd.contact_id, &cmd.patch, cmd.etag(), now)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(convert::contact(&contact, self.0.retention)))
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Result<Response<pb::DeleteContactResponse>, Status> {
        let cmd: DeleteContact = self.0.command(&request)?;
        let now = self.0.clock.now();
        self.0
            .store
            .delete_contact(&cmd.account, cmd.contact_id, cmd.etag(), now)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::DeleteContactResponse {}))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        let cmd: ListContacts = self.0.command(&request)?;
        let page = self
            .0
            .store
            .list_contacts(&cmd.account, cmd.category.as_deref(), cmd.after, cmd.size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(cmd.response(&page, self.0.retention)))
    }

    async fn list_expiring_contacts(
        &self,
        request: Request<pb::ListExpiringContactsRequest>,
    ) -> Result<Response<pb::ListExpiringContactsResponse>, Status> {
        let cmd: ListExpiringContacts = self.0.command(&request)?;
        let (until, after) = cmd.bounds(self.0.clock.now(), self.0.retention);
        let page = self
            .0
            .store
            .list_expiring_contacts(&cmd.account, until, after, cmd.size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(cmd.response(until, &page, self.0.retention)))
    }

    async fn search_contacts(
        &self,
        request: Request<pb::SearchContactsRequest>,
    ) -> Result<Response<pb::SearchContactsResponse>, Status> {
        let cmd = self.0.with_region(&request, SearchContacts::parse).await?;
        let page = self
            .0
            .store
            .search_contacts(&cmd.account, &cmd.search, cmd.after, cmd.size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(cmd.response(&page, self.0.retention)))
    }

    async fn list_undelivered_messages(
        &self,
        request: Request<pb::ListUndeliveredMessagesRequest>,
    ) -> Result<Response<pb::ListUndeliveredMessagesResponse>, Status> {
        let cmd: ListUndeliveredMessages = self.0.command(&request)?;
        let page = self
            .0
            .store
            .list_undelivered_messages(&cmd.account, cmd.contact_id, cmd.after, cmd.size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(cmd.response(&page)))
    }
}
