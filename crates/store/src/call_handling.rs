//! Call-handling settings per account and employee: read, and field-masked upsert under an
//! etag, the employee overrides written as one ordered list.

use crate::exec::{Conn, Route};
use crate::row::{in_step, row_struct};
use crate::{Entity, Error, Store};
use callers_domain::AccountId;
use callers_domain::call_handling::{
    CallHandling, CallHandlingPatch, ConversationStyle, EmployeeOverride, OwnNumber, TimeZone,
};
use callers_domain::change::Change;
use callers_domain::phone::E164;
use callers_domain::phone::Region;
use chrono::{DateTime, Utc};

/// The settings with all their employees, aggregated in list order: [`SettingsRow`].
macro_rules! select_settings {
    () => {
        "SELECT h.account_id, h.conversation_style, h.caller_id_transmission, h.phone_region, \
         h.time_zone, h.own_numbers, h.own_e164s, h.call_note_retention_days, h.version, \
         h.update_time, e.employee_ids, e.employee_styles, e.employee_cids \
         FROM call_handling h LEFT JOIN LATERAL ( \
           SELECT array_agg(x.employee_id ORDER BY x.position) AS employee_ids, \
                  array_agg(x.conversation_style ORDER BY x.position) AS employee_styles, \
                  array_agg(x.caller_id_transmission ORDER BY x.position) AS employee_cids \
           FROM employee_call_handling x WHERE x.account_id = h.account_id) e ON true \
         WHERE h.account_id = $1"
    };
}
const SELECT: &str = select_settings!();
const SELECT_FOR_UPDATE: &str = concat!(select_settings!(), " FOR UPDATE OF h");

/// The settings with one employee's entry, if it has one; the parameters' numbers are
/// arguments so that `identify::CALL_BY_NUMBER` can embed it, and the columns carry a
/// `settings_` prefix so they never meet a contact's there. A join on the primary key, not
/// [`SELECT`]'s aggregation: this runs on every incoming call. Read by [`EmployeeSettingsRow`].
macro_rules! select_for_employee {
    ($account:literal, $employee:literal) => {
        concat!(
            "SELECT h.account_id AS settings_account_id, \
             h.conversation_style AS settings_style, h.caller_id_transmission AS settings_cid, \
             h.phone_region AS settings_region, h.time_zone AS settings_time_zone, \
             h.own_numbers AS settings_own_numbers, h.own_e164s AS settings_own_e164s, \
             h.version AS settings_version, \
             h.update_time AS settings_update_time, x.employee_id AS settings_employee_id, \
             x.conversation_style AS settings_employee_style, \
             x.caller_id_transmission AS settings_employee_cid \
             FROM call_handling h LEFT JOIN employee_call_handling x \
             ON x.account_id = h.account_id AND x.employee_id = ",
            $employee,
            " WHERE h.account_id = ",
            $account
        )
    };
}
pub(crate) use select_for_employee;

/// The columns a write sets, for insert and update alike, in the order of [`write`]'s values.
macro_rules! settings_columns {
    () => {
        "(account_id, conversation_style, caller_id_transmission, phone_region, version, \
         update_time, time_zone, own_numbers, own_e164s, call_note_retention_days)"
    };
}
const INSERT: &str = concat!(
    "INSERT INTO call_handling ",
    settings_columns!(),
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (account_id) DO NOTHING"
);
const UPDATE: &str = concat!(
    "UPDATE call_handling SET ",
    settings_columns!(),
    " = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) WHERE account_id = $1"
);

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

fn region_from_db(region: &str) -> Result<Region, Error> {
    Region::parse(region).map_err(|_| Error::Corrupt(format!("phone region {region:?}")))
}

row_struct! {
    /// The settings with all employees, as [`SELECT`] reads them.
    struct SettingsRow {
        account_id: String,
        conversation_style: i16,
        caller_id_transmission: bool,
        phone_region: String,
        time_zone: String,
        own_numbers: Vec<String>,
        own_e164s: Vec<String>,
        call_note_retention_days: Option<i32>,
        version: i64,
        update_time: DateTime<Utc>,
        employee_ids: Option<Vec<String>>,
        employee_styles: Option<Vec<Option<i16>>>,
        employee_cids: Option<Vec<Option<bool>>>,
    }
}

impl TryFrom<SettingsRow> for CallHandling {
    type Error = Error;

    fn try_from(r: SettingsRow) -> Result<CallHandling, Error> {
        let employees = in_step(r.employee_ids, r.employee_styles, r.employee_cids)
            .map(|(employee_id, style, cid)| employee(employee_id, style, cid))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(CallHandling {
            account_id: r.account_id,
            conversation_style: style_from_db(r.conversation_style)?,
            caller_id_transmission: r.caller_id_transmission,
            phone_region: region_from_db(&r.phone_region)?,
            employees,
            time_zone: TimeZone::from_stored(r.time_zone),
            own_numbers: own_numbers(r.own_numbers, r.own_e164s),
            call_note_retention_days: r.call_note_retention_days.map(|d| d.unsigned_abs()),
            version: r.version,
            update_time: r.update_time,
        })
    }
}

row_struct! {
    /// The settings with at most one employee, as [`select_for_employee`] reads them: every
    /// column NULL when the account has none.
    struct EmployeeSettingsRow {
        settings_account_id: Option<String>,
        settings_style: Option<i16>,
        settings_cid: Option<bool>,
        settings_region: Option<String>,
        settings_time_zone: Option<String>,
        settings_own_numbers: Option<Vec<String>>,
        settings_own_e164s: Option<Vec<String>>,
        settings_version: Option<i64>,
        settings_update_time: Option<DateTime<Utc>>,
        settings_employee_id: Option<String>,
        settings_employee_style: Option<i16>,
        settings_employee_cid: Option<bool>,
    }
}

impl EmployeeSettingsRow {
    /// `None` when the account has no settings.
    pub(crate) fn settings(self) -> Result<Option<CallHandling>, Error> {
        let (
            Some(account_id),
            Some(style),
            Some(cid),
            Some(region),
            Some(version),
            Some(update_time),
        ) = (
            self.settings_account_id,
            self.settings_style,
            self.settings_cid,
            self.settings_region,
            self.settings_version,
            self.settings_update_time,
        )
        else {
            return Ok(None);
        };
        let employees = match self.settings_employee_id {
            Some(id) => vec![employee(
                id,
                self.settings_employee_style,
                self.settings_employee_cid,
            )?],
            None => Vec::new(),
        };
        Ok(Some(CallHandling {
            account_id,
            conversation_style: style_from_db(style)?,
            caller_id_transmission: cid,
            phone_region: region_from_db(&region)?,
            employees,
            time_zone: TimeZone::from_stored(self.settings_time_zone.unwrap_or_default()),
            own_numbers: own_numbers(
                self.settings_own_numbers.unwrap_or_default(),
                self.settings_own_e164s.unwrap_or_default(),
            ),
            // Not read on this path (incoming calls); GetCallHandling reads it.
            call_note_retention_days: None,
            version,
            update_time,
        }))
    }
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

async fn read(db: Conn<'_>, account: &str, lock: bool) -> Result<Option<CallHandling>, Error> {
    let sql = if lock { SELECT_FOR_UPDATE } else { SELECT };
    db.row::<SettingsRow>(sql, &[&account])
        .await?
        .map(CallHandling::try_from)
        .transpose()
}

/// The settings with at most `employee`'s entry (none for an empty id: entries always have one).
pub(crate) async fn read_for_employee(
    db: Conn<'_>,
    account: &str,
    employee: &str,
) -> Result<Option<CallHandling>, Error> {
    match db
        .row::<EmployeeSettingsRow>(select_for_employee!("$1", "$2"), &[&account, &employee])
        .await?
    {
        Some(row) => row.settings(),
        None => Ok(None),
    }
}

row_struct! {
    struct RegionRow {
        phone_region: String,
    }
}

impl Store {
    /// The account's phone region, when it has settings stored.
    pub async fn phone_region(&self, account: &AccountId) -> Result<Option<String>, Error> {
        let row: Option<RegionRow> = self
            .pooled(async |s| {
                s.conn()
                    .row(
                        "SELECT phone_region FROM call_handling WHERE account_id = $1",
                        &[&account.as_str()],
                    )
                    .await
            })
            .await?;
        Ok(row.map(|r| r.phone_region))
    }

    /// The account's settings with all employee overrides; `NotFound` when none are stored.
    pub async fn get_call_handling(&self, account: &AccountId) -> Result<CallHandling, Error> {
        self.read(Route::Pooled, async |s| {
            read(s.conn(), account.as_str(), false)
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
        self.pooled(async |s| read_for_employee(s.conn(), account.as_str(), employee_id).await)
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
        self.pooled(async |s| {
            let tx = s.transaction().await?;
            let db = tx.conn();
            let initial = CallHandling::initial(account.as_str(), *default_region, now);
            let current = match read(db, account.as_str(), true).await? {
                Some(c) => Some(c),
                // Two first writers race: the loser's insert does nothing and waits for the
                // winner, whose row it then locks and updates like any other.
                None if write(db, INSERT, &initial).await? == 1 => None,
                None => read(db, account.as_str(), true).await?,
            };
            if let Some(etag) = etag {
                let version = current.as_ref().map_or(0, |c| c.version);
                if crate::contacts::version_of(etag) != Some(version) || version == 0 {
                    return Err(Error::EtagMismatch);
                }
            }
            let mut settings = current.unwrap_or(initial);
            patch.apply(&mut settings)?;
            settings.version += 1;
            settings.update_time = now;
            write(db, UPDATE, &settings).await?;
            if patch.employees.is_some() {
                replace_employees(db, &settings).await?;
            }
            let changed = Change::CallHandlingUpdated(settings.clone());
            self.commit_changes(tx, account.as_str(), now, &[changed])
                .await?;
            Ok(settings)
        })
        .await
    }
}

/// Runs [`INSERT`] or [`UPDATE`] with the settings' own columns.
async fn write(tx: Conn<'_>, sql: &str, s: &CallHandling) -> Result<u64, Error> {
    tx.execute(
        sql,
        &[
            &s.account_id,
            &style_to_db(s.conversation_style),
            &s.caller_id_transmission,
            &s.phone_region.as_str(),
            &s.version,
            &s.update_time,
            &s.time_zone.as_str(),
            &s.own_numbers
                .iter()
                .map(|o| o.number.as_str())
                .collect::<Vec<_>>(),
            &s.own_numbers
                .iter()
                .map(|o| o.e164.as_str())
                .collect::<Vec<_>>(),
            &s.call_note_retention_days.map(|d| d as i32),
        ],
    )
    .await
}

fn own_numbers(numbers: Vec<String>, e164s: Vec<String>) -> Vec<OwnNumber> {
    numbers
        .into_iter()
        .zip(e164s)
        .map(|(number, e164)| OwnNumber {
            number,
            e164: E164::from_trusted(e164),
        })
        .collect()
}

async fn replace_employees(tx: Conn<'_>, s: &CallHandling) -> Result<(), Error> {
    tx.execute(
        "DELETE FROM employee_call_handling WHERE account_id = $1",
        &[&s.account_id],
    )
    .await?;
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
    tx.execute(
        "INSERT INTO employee_call_handling \
         (account_id, employee_id, position, conversation_style, caller_id_transmission) \
         SELECT $1, * FROM unnest($2::text[], $3::int[], $4::smallint[], $5::boolean[])",
        &[&s.account_id, &ids, &positions, &styles, &cids],
    )
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
            recognition(Some(&one), "e1", None),
            recognition(Some(&read), "e1", None)
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
