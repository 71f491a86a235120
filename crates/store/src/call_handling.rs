//! Call-handling settings per account and employee.

use crate::{Error, Store};
use callers_domain::AccountId;

impl Store {
    /// The account's phone region, when it has settings stored.
    pub async fn phone_region(&self, account: &AccountId) -> Result<Option<String>, Error> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT phone_region FROM call_handling WHERE account_id = $1")
            .await?;
        let row = client.query_opt(&stmt, &[&account.as_str()]).await?;
        Ok(row.map(|r| r.get(0)))
    }
}
