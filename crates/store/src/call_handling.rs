//! Call-handling settings per account and employee: read, and field-masked upsert under an
//! etag, the employee overrides written as one ordered list.

use crate::shared::Conn;
use crate::{Entity, Error, Store};
use callers_domain::AccountId;
use callers_domain::call_handling::{
    CallHandling, CallHandlingPatch, ConversationStyle, EmployeeOverride,
};
use callers_domain::phone::Region;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

/// The settings with all their employees, aggregated in list order.
const SELECT: &str = "SELECT h.account_id, h.conversation_style, h.caller_id_transmission, \
     h.phone_region, h.version, h.update_time, e.ids, e.styles, e.cids \
     FROM call_handling h LEFT JOIN LATERAL ( \
       SELECT array_agg(x.employee_id ORDER BY x.position) AS ids, \
              array_agg(x.conversation_style ORDER BY x.position) AS styles, \
              array_agg(x.caller_id_transmission ORDER BY x.position) AS cids \
       FROM employee_call_handling x WHERE x.account_id = h.account_id) e ON true \
     WHERE h.account_id = $1";

/// The settings with one employee's entry, if it has one; the parameters' numbers are
/// arguments so that `identify::CALL_BY_NUMBER` can embed it. A join on the primary key, not
/// [`SELECT`]'s aggregation: this runs on every incoming call. Read by [`from_employee_row`].
macro_rules! select_for_employee {
    ($account:literal, $employee:literal) => {
        concat!(
            "SELECT h.account_id, h.conversation_style, h.caller_id_transmission, \
             h.phone_region, h.version, h.update_time, x.employee_id, \
             x.conversation_style AS employee_style, x.caller_id_transmission AS employee_cid \
             FROM call_handling h LEFT JOIN employee_call_handling x \
             ON x.account_id = h.account_id AND x.employee_id = ",
            $employee,
            " WHERE h.account_id = ",
            $account
        )
    };
}
pub(crate) use select_for_employee;

/// Stored code of an account style that is not set.
const STYLE_NOT_SET: i16 = 0;

fn style_from_db(code: i16) -> Result<Option<ConversationStyle>, Error> {
    if code == STYLE_NOT_SET {
        return Ok(None);
    }
    ConversationStyle::from_code(i32::from(code))
        .map(Some)
        .ok_or_else(|| Error::Corrupt(format!("conversation style code {code}")))
}

fn style_to_db(style: Option<ConversationStyle>) -> i16 {
    style.map_or(STYLE_NOT_SET, |s| s.code() as i16)
}

fn from_row(row: &Row) -> Result<CallHandling, Error> {
    let ids: Option<Vec<String>> = row.get(6);
    let styles: Option<Vec<Option<i16>>> = row.get(7);
    let cids: Option<Vec<Option<bool>>> = row.get(8);
    let employees = ids
        .unwrap_or_default()
        .into_iter()
        .zip(styles.unwrap_or_default())
        .zip(cids.unwrap_or_default())
        .map(|((employee_id, style), cid)| employee(employee_id, style, cid))
        .collect::<Result<Vec<_>, Error>>()?;
    settings_from_row(row, 0, employees)
}

/// The settings of a [`select_for_employee`] row whose columns start at `at`; `None` when the
/// account has none (the columns are NULL).
pub(crate) fn from_employee_row(row: &Row, at: usize) -> Result<Option<CallHandling>, Error> {
    if row.get::<_, Option<&str>>(at).is_none() {
        return Ok(None);
    }
    let employees = match row.get::<_, Option<String>>(at + 6) {
        Some(id) => vec![employee(id, row.get(at + 7), row.get(at + 8))?],
        None => Vec::new(),
    };
    settings_from_row(row, at, employees).map(Some)
}

fn employee(
    employee_id: String,
    style: Option<i16>,
    cid: Option<bool>,
) -> Result<EmployeeOverride, Error> {
    Ok(EmployeeOverride {
        employee_id,
        conversation_style: match style {
            Some(code) => style_from_db(code)?,
            None => None,
        },
        caller_id_transmission: cid,
    })
}

/// The account's own columns, which both statements read first.
fn settings_from_row(
    row: &Row,
    at: usize,
    employees: Vec<EmployeeOverride>,
) -> Result<CallHandling, Error> {
    let region: &str = row.get(at + 3);
    let phone_region =
        Region::parse(region).map_err(|_| Error::Corrupt(format!("phone region {region:?}")))?;
    Ok(CallHandling {
        account_id: row.get(at),
        conversation_style: style_from_db(row.get(at + 1))?,
        caller_id_transmission: row.get(at + 2),
        phone_region,
        employees,
        version: row.get(at + 4),
        update_time: row.get(at + 5),
    })
}

fn version_of(etag: &str) -> Option<i64> {
    etag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

async fn read(
    client: &impl GenericClient,
    account: &str,
    lock: bool,
) -> Result<Option<CallHandling>, Error> {
    let stmt = if lock {
        client
            .prepare_cached(&format!("{SELECT} FOR UPDATE OF h"))
            .await?
    } else {
        client.prepare_cached(SELECT).await?
    };
    let row = client.query_opt(&stmt, &[&account]).await?;
    row.as_ref().map(from_row).transpose()
}

/// The settings with at most `employee`'s entry (none for an empty id: entries always have one).
pub(crate) async fn read_for_employee(
    client: &impl Conn,
    account: &str,
    employee: &str,
) -> Result<Option<CallHandling>, Error> {
    let stmt = client
        .prepare_cached(select_for_employee!("$1", "$2"))
        .await?;
    let rows = client.query(&stmt, &[&account, &employee]).await?;
    rows.first()
        .map(|r| from_employee_row(r, 0))
        .transpose()
        .map(Option::flatten)
}

impl Store {
    /// The account's phone region, when it has settings stored.
    pub async fn phone_region(&self, account: &AccountId) -> Result<Option<String>, Error> {
        self.with_client(async |client| {
            let stmt = client
                .prepare_cached("SELECT phone_region FROM call_handling WHERE account_id = $1")
                .await?;
            let row = client.query_opt(&stmt, &[&account.as_str()]).await?;
            Ok(row.map(|r| r.get(0)))
        })
        .await
    }

    /// The account's settings with all employee overrides; `NotFound` when none are stored.
    pub async fn get_call_handling(&self, account: &AccountId) -> Result<CallHandling, Error> {
        self.with_client(async |client| {
            read(&*client, account.as_str(), false)
                .await?
                .ok_or(Error::NotFound(Entity::CallHandling))
        })
        .await
    }

    /// What decides recognition for one employee: the account's settings with `employees`
    /// holding at most that employee's entry (none for an empty id), so an account with many
    /// employees costs no more per incoming call. `None` when the account has no settings.
    pub async fn call_handling_for_employee(
        &self,
        account: &AccountId,
        employee_id: &str,
    ) -> Result<Option<CallHandling>, Error> {
        self.with_client(async |client| {
            read_for_employee(&**client, account.as_str(), employee_id).await
        })
        .await
    }

    /// Applies a field-masked change, creating the settings (from [`CallHandling::initial`] with
    /// `default_region`) when the account has none. A stale `etag`, or any `etag` while nothing
    /// is stored, is refused. The employee list is rewritten only when the patch carries one.
    pub async fn update_call_handling(
        &self,
        account: &AccountId,
        patch: &CallHandlingPatch,
        etag: Option<&str>,
        default_region: &Region,
        now: DateTime<Utc>,
    ) -> Result<CallHandling, Error> {
        let now = crate::db_time(now);
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            let current = match read(&tx, account.as_str(), true).await? {
                Some(c) => Some(c),
                // Two first writers race: the loser's insert does nothing and waits for the
                // winner, whose row it then locks and updates like any other.
                None if try_create(&tx, account.as_str(), default_region, now).await? => None,
                None => read(&tx, account.as_str(), true).await?,
            };
            if let Some(etag) = etag {
                let version = current.as_ref().map_or(0, |c| c.version);
                if version_of(etag) != Some(version) || version == 0 {
                    return Err(Error::EtagMismatch);
                }
            }
            let mut settings = current
                .unwrap_or_else(|| CallHandling::initial(account.as_str(), *default_region, now));
            patch.apply(&mut settings);
            settings.version += 1;
            settings.update_time = now;
            write(&tx, &settings).await?;
            if patch.employees.is_some() {
                replace_employees(&tx, &settings).await?;
            }
            tx.commit().await?;
            Ok(settings)
        })
        .await
    }
}

/// Inserts a version-0 placeholder row; `false` when another transaction created one first.
async fn try_create(
    tx: &Transaction<'_>,
    account: &str,
    region: &Region,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO call_handling (account_id, conversation_style, caller_id_transmission, \
             phone_region, version, update_time) VALUES ($1, $2, false, $3, 0, $4) \
             ON CONFLICT (account_id) DO NOTHING",
        )
        .await?;
    let n = tx
        .execute(&stmt, &[&account, &STYLE_NOT_SET, &region.as_str(), &now])
        .await?;
    Ok(n == 1)
}

async fn write(tx: &Transaction<'_>, s: &CallHandling) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "UPDATE call_handling SET conversation_style = $2, caller_id_transmission = $3, \
             phone_region = $4, version = $5, update_time = $6 WHERE account_id = $1",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &s.account_id,
            &style_to_db(s.conversation_style),
            &s.caller_id_transmission,
            &s.phone_region.as_str(),
            &s.version,
            &s.update_time,
        ],
    )
    .await?;
    Ok(())
}

async fn replace_employees(tx: &Transaction<'_>, s: &CallHandling) -> Result<(), Error> {
    let delete = tx
        .prepare_cached("DELETE FROM employee_call_handling WHERE account_id = $1")
        .await?;
    tx.execute(&delete, &[&s.account_id]).await?;
    if s.employees.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = s.employees.iter().map(|e| e.employee_id.as_str()).collect();
    let positions: Vec<i32> = (0..s.employees.len() as i32).collect();
    let styles: Vec<Option<i16>> = s
        .employees
        .iter()
        .map(|e| e.conversation_style.map(|st| st.code() as i16))
        .collect();
    let cids: Vec<Option<bool>> = s
        .employees
        .iter()
        .map(|e| e.caller_id_transmission)
        .collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO employee_call_handling \
             (account_id, employee_id, position, conversation_style, caller_id_transmission) \
             SELECT $1, * FROM unnest($2::text[], $3::int[], $4::smallint[], $5::boolean[])",
        )
        .await?;
    tx.execute(&insert, &[&s.account_id, &ids, &positions, &styles, &cids])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_store;
    use callers_domain::call_handling::{Field, RawCallHandling, RawEmployee, recognition};

    fn acc(s: &str) -> AccountId {
        AccountId::parse(s).unwrap()
    }

    fn patch(raw: RawCallHandling, mask: &[Field]) -> CallHandlingPatch {
        CallHandlingPatch::parse(&raw, mask, &Region::germany(), "call_handling").unwrap()
    }

    fn employee(id: &str, style: i32, cid: Option<bool>) -> RawEmployee {
        RawEmployee {
            employee_id: id.into(),
            conversation_style: style,
            caller_id_transmission: cid,
        }
    }

    #[tokio::test]
    async fn settings_are_created_by_the_first_update_and_read_back() {
        let (store, _db) = fresh_store().await;
        let a = acc("a");
        let e = store.get_call_handling(&a).await.unwrap_err();
        assert!(matches!(e, Error::NotFound(Entity::CallHandling)), "{e:?}");
        assert_eq!(store.phone_region(&a).await.unwrap(), None);

        let raw = RawCallHandling {
            caller_id_transmission: true,
            employees: vec![employee("e2", 2, None), employee("e1", 0, Some(false))],
            ..Default::default()
        };
        let at = Region::parse("AT").unwrap();
        let p = patch(raw, &[Field::CallerIdTransmission, Field::Employees]);
        let created = store
            .update_call_handling(&a, &p, None, &at, Utc::now())
            .await
            .unwrap();
        assert_eq!(created.version, 1);
        assert_eq!(created.conversation_style, None);
        assert_eq!(
            created.phone_region, at,
            "default region when not in the mask"
        );
        assert_eq!(created.employees[0].employee_id, "e2", "list order is kept");
        let read = store.get_call_handling(&a).await.unwrap();
        assert_eq!(read, created);
        assert_eq!(store.phone_region(&a).await.unwrap().as_deref(), Some("AT"));

        let one = store.call_handling_for_employee(&a, "e1").await.unwrap();
        let one = one.unwrap();
        assert_eq!(one.employees, read.employees[1..], "e1's entry, as stored");
        assert_eq!(
            CallHandling {
                employees: read.employees.clone(),
                ..one.clone()
            },
            read,
            "the account's own settings"
        );
        let two = store.call_handling_for_employee(&a, "e2").await.unwrap();
        assert_eq!(two.unwrap().employees, read.employees[..1]);
        assert_eq!(
            recognition(Some(&one), "e1"),
            recognition(Some(&read), "e1")
        );
        let none = store.call_handling_for_employee(&a, "").await.unwrap();
        assert!(none.unwrap().employees.is_empty());
        assert_eq!(
            store
                .call_handling_for_employee(&acc("b"), "e1")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn employees_are_replaced_only_when_in_the_mask_and_etags_guard_writes() {
        let (store, _db) = fresh_store().await;
        let a = acc("a");
        let de = Region::germany();
        let raw = RawCallHandling {
            conversation_style: 1,
            employees: vec![employee("e1", 2, Some(true))],
            ..Default::default()
        };
        let first = store
            .update_call_handling(&a, &patch(raw, &Field::ALL), None, &de, Utc::now())
            .await
            .unwrap();
        let style_only = patch(
            RawCallHandling {
                conversation_style: 2,
                ..Default::default()
            },
            &[Field::ConversationStyle],
        );
        let second = store
            .update_call_handling(&a, &style_only, Some(&first.etag()), &de, Utc::now())
            .await
            .unwrap();
        assert_eq!(second.version, 2);
        assert_eq!(
            second.employees, first.employees,
            "not in the mask, so kept"
        );
        let stale = store
            .update_call_handling(&a, &style_only, Some(&first.etag()), &de, Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(stale, Error::EtagMismatch), "{stale:?}");
        let cleared = store
            .update_call_handling(
                &a,
                &patch(RawCallHandling::default(), &[Field::Employees]),
                Some(&second.etag()),
                &de,
                Utc::now(),
            )
            .await
            .unwrap();
        assert!(cleared.employees.is_empty());
        assert_eq!(store.get_call_handling(&a).await.unwrap(), cleared);
        // An etag for settings that do not exist is stale too, and creates nothing.
        let e = store
            .update_call_handling(&acc("b"), &style_only, Some("\"1\""), &de, Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::EtagMismatch), "{e:?}");
        assert_eq!(store.phone_region(&acc("b")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn concurrent_first_updates_both_apply_one_after_the_other() {
        let (store, _db) = fresh_store().await;
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let raw = RawCallHandling {
                        caller_id_transmission: i % 2 == 0,
                        ..Default::default()
                    };
                    let p = patch(raw, &[Field::CallerIdTransmission]);
                    store
                        .update_call_handling(&acc("a"), &p, None, &Region::germany(), Utc::now())
                        .await
                })
            })
            .collect();
        let mut versions = Vec::new();
        for t in tasks {
            versions.push(t.await.unwrap().unwrap().version);
        }
        versions.sort();
        assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
    }
}
