//! Store behaviour against a real PostgreSQL, each test on a fresh database.

use crate::testing::fresh_store;
use crate::{Error, IdempotencyKey, Operation};
use callers_domain::AccountId;
use callers_domain::contact::{ContactPatch, NewContact, Origin, RawContact, RawPhone};
use callers_domain::phone::Region;
use chrono::{Duration, Utc};
use std::collections::HashSet;
use uuid::Uuid;

fn acc(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}

fn caller(last: &str) -> NewContact {
    let raw = RawContact {
        categories: vec!["caller".into()],
        last_name: last.into(),
        phone_numbers: vec![RawPhone {
            number: "030 1234567".into(),
            kind: 1,
        }],
        ..Default::default()
    };
    NewContact::parse(&raw, Origin::Manual, &Region::germany(), "contact").unwrap()
}

#[tokio::test]
async fn migrations_run_concurrently_without_racing() {
    let db = crate::testing::fresh_database().await;
    let url = db.url().to_owned();
    let runs = (0..4).map(|_| {
        let url = url.clone();
        async move { crate::migrate(&url).await }
    });
    for r in futures_join(runs).await {
        r.unwrap();
    }
}

async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn concurrent_creates_with_one_request_id_make_one_contact() {
    let (store, _db) = fresh_store().await;
    let key = IdempotencyKey {
        request_id: Uuid::new_v4(),
        operation: Operation::CreateContact,
        request_hash: vec![1, 2, 3],
    };
    let tasks = (0..16).map(|_| {
        let store = store.clone();
        let key = key.clone();
        async move {
            store
                .create_contact(&acc("a"), &caller("Müller"), Some(&key), Utc::now())
                .await
        }
    });
    let results = futures_join(tasks).await;
    let ids: HashSet<Uuid> = results.into_iter().map(|r| r.unwrap().contact_id).collect();
    assert_eq!(ids.len(), 1);
    let page = store
        .list_contacts(&acc("a"), None, None, 100)
        .await
        .unwrap();
    assert_eq!(page.contacts.len(), 1);
}

#[tokio::test]
async fn a_reused_request_id_with_another_body_is_refused_and_writes_nothing() {
    let (store, _db) = fresh_store().await;
    let id = Uuid::new_v4();
    let k1 = IdempotencyKey {
        request_id: id,
        operation: Operation::CreateContact,
        request_hash: vec![1],
    };
    let k2 = IdempotencyKey {
        request_hash: vec![2],
        ..k1.clone()
    };
    store
        .create_contact(&acc("a"), &caller("A"), Some(&k1), Utc::now())
        .await
        .unwrap();
    let e = store
        .create_contact(&acc("a"), &caller("B"), Some(&k2), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RequestIdReused), "{e:?}");
    let page = store
        .list_contacts(&acc("a"), None, None, 100)
        .await
        .unwrap();
    assert_eq!(page.contacts.len(), 1);
}

#[tokio::test]
async fn request_ids_are_per_account() {
    let (store, _db) = fresh_store().await;
    let key = IdempotencyKey {
        request_id: Uuid::new_v4(),
        operation: Operation::CreateContact,
        request_hash: vec![1],
    };
    let a = store
        .create_contact(&acc("a"), &caller("A"), Some(&key), Utc::now())
        .await
        .unwrap();
    let b = store
        .create_contact(&acc("b"), &caller("A"), Some(&key), Utc::now())
        .await
        .unwrap();
    assert_ne!(a.contact_id, b.contact_id);
    assert_eq!(b.account_id, "b");
}

#[tokio::test]
async fn an_update_under_a_stale_etag_changes_nothing() {
    let (store, _db) = fresh_store().await;
    let c = store
        .create_contact(&acc("a"), &caller("Alt"), None, Utc::now())
        .await
        .unwrap();
    let patch = ContactPatch {
        last_name: Some("Neu".into()),
        ..Default::default()
    };
    let updated = store
        .update_contact(&acc("a"), c.contact_id, &patch, Some(&c.etag()), Utc::now())
        .await
        .unwrap();
    assert_ne!(updated.etag(), c.etag());
    let e = store
        .update_contact(&acc("a"), c.contact_id, &patch, Some(&c.etag()), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::EtagMismatch));
    let now = store.get_contact(&acc("a"), c.contact_id).await.unwrap();
    assert_eq!(now, updated);
}

#[tokio::test]
async fn paging_under_concurrent_inserts_returns_every_existing_contact_once() {
    let (store, _db) = fresh_store().await;
    let mut existing = HashSet::new();
    for i in 0..57 {
        let c = store
            .create_contact(&acc("a"), &caller(&format!("N{i}")), None, Utc::now())
            .await
            .unwrap();
        existing.insert(c.contact_id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_contacts(&acc("a"), None, after, 10)
            .await
            .unwrap();
        seen.extend(page.contacts.iter().map(|c| c.contact_id));
        // Inserts between pages must neither repeat nor hide existing rows.
        for _ in 0..3 {
            store
                .create_contact(&acc("a"), &caller("Neu"), None, Utc::now())
                .await
                .unwrap();
        }
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a contact was listed twice");
    assert!(
        existing.is_subset(&unique),
        "an existing contact was skipped"
    );
}

#[tokio::test]
async fn expiring_contacts_come_soonest_first_and_only_when_subject_to_deletion() {
    let (store, _db) = fresh_store().await;
    let now = Utc::now();
    let old = store
        .create_contact(&acc("a"), &caller("Alt"), None, now - Duration::days(170))
        .await
        .unwrap();
    let older = store
        .create_contact(&acc("a"), &caller("Älter"), None, now - Duration::days(175))
        .await
        .unwrap();
    let _fresh = store
        .create_contact(&acc("a"), &caller("Frisch"), None, now)
        .await
        .unwrap();
    let mut kept = caller("Behalten");
    kept.fields.keep_permanently = true;
    store
        .create_contact(&acc("a"), &kept, None, now - Duration::days(175))
        .await
        .unwrap();
    let until = now + Duration::days(30) - Duration::days(180);
    let page = store
        .list_expiring_contacts(&acc("a"), until, None, 10)
        .await
        .unwrap();
    let ids: Vec<Uuid> = page.contacts.iter().map(|c| c.contact_id).collect();
    assert_eq!(ids, vec![older.contact_id, old.contact_id]);
}

/// A request given up while its statement runs (a deadline, a client gone) must not hand its
/// connection, with the statement still queued on it, to the next request: it is closed. One
/// that finished goes back to the pool and is reused.
#[tokio::test]
async fn a_connection_left_midway_is_closed_and_a_finished_one_reused() {
    let (store, db) = fresh_store().await;
    let backend = async || {
        store
            .pooled(async |s| {
                let row = s
                    .conn()
                    .query_opt("SELECT pg_backend_pid() AS pid", &[])
                    .await?;
                crate::row::get::<i32>(&row.expect("one row"), "pid")
            })
            .await
            .unwrap()
    };
    let first = backend().await;
    assert_eq!(backend().await, first, "a finished connection is reused");

    let (observer, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let slow = store.pooled(async |s| s.conn().batch_execute("SELECT pg_sleep(60)").await);
    let started = async {
        while observer
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'",
                &[&first],
            )
            .await
            .unwrap()
            .is_empty()
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = slow => panic!("pg_sleep(60) ended"),
        _ = started => {}
    }
    assert_eq!(
        store.connections().open,
        0,
        "the connection left midway is gone"
    );
    assert_ne!(
        backend().await,
        first,
        "the next request gets another connection"
    );
}

/// Operators size the database by the connection metrics: the shared connections a lookup by
/// number opened count there beside the pooled ones.
#[tokio::test]
async fn shared_connections_count_in_the_connection_figures() {
    let (store, _db) = fresh_store().await;
    let before = store.connections();
    let shared = crate::PoolConfig::default().shared_connections;
    assert_eq!(before.open, 0);
    assert_eq!(before.max, crate::PoolConfig::default().max_size + shared);
    let acme = AccountId::parse("acme").unwrap();
    store
        .identify_call(
            &acme,
            "",
            "+49301234567",
            "",
            5,
            &Region::germany(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let after = store.connections();
    assert_eq!(after.open, 1, "one shared connection, no pooled one");
    assert_eq!(after.idle, 1, "no call is on it now");
}
