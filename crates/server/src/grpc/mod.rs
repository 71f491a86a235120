//! The gRPC services: thin handlers that authorise, convert, call the store and convert back.
//! What every handler shares is here: authorising the account a request names, resolving its
//! phone region, and turning the request into a command.

pub mod call_handling;
pub mod call_notes;
pub mod changes;
pub mod contacts;
pub mod identification;
pub mod privacy;

use crate::auth::{self, Scope};
use crate::error;
use callers_domain::phone::Region;
use callers_domain::retention::Retention;
use callers_domain::{AccountId, Clock, Violations};
use callers_proto::v1 as pb;
use callers_store::Store;
use std::sync::Arc;
use tonic::{Request, Status};

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub default_region: Region,
    pub retention: Retention,
    /// `IdentifyCaller`'s counts, flushed by a task of `crate::serve`.
    pub calls: Arc<crate::tally::CallTally>,
    /// The keys suppressed numbers are hashed with; empty when none are configured.
    pub privacy_keys: Arc<callers_domain::privacy::HashKeys>,
}

impl App {
    /// Authorises the account `request` names and converts the request into its command; all
    /// violations of the request come back together as INVALID_ARGUMENT.
    fn command<R: Tenant, C>(&self, request: &Request<R>) -> Result<C, Status>
    where
        C: for<'a> TryFrom<&'a R, Error = Violations>,
    {
        self.parse(request, |r| C::try_from(r))
    }

    /// As [`command`](Self::command), with a parse function of the RPC's own.
    fn parse<R: Tenant, C>(
        &self,
        request: &Request<R>,
        parse: impl FnOnce(&R) -> Result<C, Violations>,
    ) -> Result<C, Status> {
        authorise(request)?;
        parse(request.get_ref()).map_err(error::invalid)
    }

    /// As [`parse`](Self::parse), for writes that read phone numbers in the account's
    /// region.
    async fn with_region<R: Tenant, C>(
        &self,
        request: &Request<R>,
        parse: impl FnOnce(&R, &Region) -> Result<C, Violations>,
    ) -> Result<C, Status> {
        let account = authorise(request)?;
        let region = self.region(account.as_ref()).await?;
        parse(request.get_ref(), &region).map_err(error::invalid)
    }

    /// The keyed hashes of a caller's number under the privacy keys (none without keys).
    fn number_hashes(
        &self,
        account: &AccountId,
        number: Option<&callers_domain::phone::E164>,
    ) -> Vec<callers_domain::privacy::KeyedHash> {
        number
            .map(|n| self.privacy_keys.hashes(account.as_str(), n))
            .unwrap_or_default()
    }

    /// The account's phone region, else the configured default. Also the default when the
    /// account itself is invalid, so the rest of the request can still be checked.
    async fn region(&self, account: Option<&AccountId>) -> Result<Region, Status> {
        let Some(account) = account else {
            return Ok(self.default_region);
        };
        match self
            .store
            .phone_region(account)
            .await
            .map_err(error::from_store)?
        {
            Some(r) => Region::parse(&r).map_err(|_| Status::internal("internal error")),
            None => Ok(self.default_region),
        }
    }
}

/// Checks the caller's grant for the request's scope and for the account the request names,
/// when that is a valid id; an invalid or missing one is left for the request's parse to
/// report with the rest.
fn authorise<R: Tenant>(request: &Request<R>) -> Result<Option<AccountId>, Status> {
    auth::require(request, R::SCOPE)?;
    let Some(Ok(account)) = request.get_ref().account_id().map(AccountId::parse) else {
        return Ok(None);
    };
    if let Some(log) = request.extensions().get::<crate::observe::RequestLog>() {
        log.set_account(account.as_str());
    }
    auth::authorize(request, &account)?;
    Ok(Some(account))
}

/// A request that names the account it acts for.
trait Tenant {
    /// What the token must be allowed to do.
    const SCOPE: Scope;

    /// `None` when the request lacks the resource that would name it.
    fn account_id(&self) -> Option<&str>;
}

impl Tenant for pb::UpdateCallHandlingRequest {
    const SCOPE: Scope = Scope::Write;

    fn account_id(&self) -> Option<&str> {
        self.call_handling.as_ref().map(|c| c.account_id.as_str())
    }
}

/// The requests that name their account in a top-level `account_id`, by scope.
macro_rules! top_level_account_id {
    ($($scope:ident: [$($request:ty),* $(,)?];)*) => {$($(
        impl Tenant for $request {
            const SCOPE: Scope = Scope::$scope;

            fn account_id(&self) -> Option<&str> {
                Some(&self.account_id)
            }
        }
    )*)*};
}

top_level_account_id!(
    Read: [
        pb::GetContactRequest,
        pb::ListContactsRequest,
        pb::ListExpiringContactsRequest,
        pb::SearchContactsRequest,
        pb::ListUndeliveredMessagesRequest,
        pb::GetCallNoteRequest,
        pb::ListCallNotesRequest,
        pb::GetCallHandlingRequest,
        pb::CheckCallerRecognitionRequest,
    ];
    Write: [
        pb::CreateContactRequest,
        pb::UpdateContactRequest,
        pb::DeleteContactRequest,
        pb::CreateCallNoteRequest,
        pb::DeliverCallerMessageRequest,
    ];
    Identify: [pb::IdentifyCallerRequest];
    Watch: [
        pb::GetChangeCursorRequest,
        pb::ListChangesRequest,
        pb::WatchChangesRequest,
    ];
    Privacy: [
        pb::EraseCallerRequest,
        pb::LiftSuppressionRequest,
        pb::ExportCallerDataRequest,
        pb::DeleteAccountDataRequest,
    ];
);
