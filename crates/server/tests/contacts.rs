//! ContactService as a client sees it.

use callers_proto::v1 as pb;
use callers_testkit::app::{bad_fields, caller, create, get, reason, spawn_app};
use prost_types::FieldMask;
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[tokio::test]
async fn a_caller_with_a_message_is_created_and_read_back() {
    let mut app = spawn_app().await;
    let mut c = caller("Müller", "030 1234567");
    c.caller_message = Some(pb::CallerMessage {
        text: "Bitte Herrn Schulze zurückrufen".into(),
        ..Default::default()
    });
    c.handling_instruction = "Immer durchstellen an Frau Lange".into();
    let created = create(&mut app, "acme", c).await;
    assert_eq!(created.account_id, "acme");
    assert_eq!(created.phone_numbers[0].e164, "+49301234567");
    assert_eq!(created.phone_numbers[0].number, "030 1234567");
    assert_eq!(created.origin, pb::Origin::ExpectedCall as i32);
    let msg = created.caller_message.clone().unwrap();
    assert!(uuid::Uuid::try_parse(&msg.message_id).is_ok());
    assert!(msg.create_time.is_some());
    assert!(!created.etag.is_empty());

    let got = get(&mut app, "acme", &created.contact_id).await.unwrap();
    assert_eq!(got, created);
    assert_eq!(got.handling_instruction, "Immer durchstellen an Frau Lange");
}

#[tokio::test]
async fn purge_time_is_set_only_for_caller_only_contacts_not_kept() {
    let mut app = spawn_app().await;
    let now = app.clock_now();
    let cases: [(&[&str], bool, bool); 5] = [
        (&["caller"], false, true),
        (&["caller"], true, false),
        (&["caller", "customer"], false, false),
        (&["customer"], false, false),
        (&[], false, false),
    ];
    for (cats, keep, has_purge_time) in cases {
        let mut c = caller("Meier", "030 1234567");
        c.categories = cats.iter().map(|s| s.to_string()).collect();
        c.keep_permanently = keep;
        let got = create(&mut app, "acme", c).await;
        assert_eq!(
            got.purge_time.is_some(),
            has_purge_time,
            "{cats:?} keep={keep}"
        );
        if let Some(t) = got.purge_time {
            assert_eq!(t.seconds, now.timestamp() + 180 * 86_400);
        }
    }
}

#[tokio::test]
async fn an_update_changes_only_masked_fields_and_moves_activity() {
    let mut app = spawn_app().await;
    let created = create(&mut app, "acme", caller("Meier", "030 1234567")).await;
    app.advance_days(10);
    let mut change = caller("Meyer", "0171 9999999");
    change.contact_id = created.contact_id.clone();
    change.company = "Meyer GmbH".into();
    let updated = app
        .contacts
        .update_contact(pb::UpdateContactRequest {
            account_id: "acme".into(),
            contact: Some(change),
            update_mask: mask(&["company"]),
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.company, "Meyer GmbH");
    assert_eq!(updated.last_name, "Meier", "not in the mask, so unchanged");
    assert_eq!(updated.phone_numbers, created.phone_numbers);
    assert_ne!(updated.etag, created.etag);
    let moved =
        updated.last_activity_time.unwrap().seconds - created.last_activity_time.unwrap().seconds;
    assert_eq!(moved, 10 * 86_400);
    assert_eq!(
        updated.purge_time.unwrap().seconds,
        updated.last_activity_time.unwrap().seconds + 180 * 86_400
    );
}

#[tokio::test]
async fn setting_the_message_text_makes_a_new_message_and_clearing_removes_it() {
    let mut app = spawn_app().await;
    let mut c = caller("Schulz", "030 1234567");
    c.caller_message = Some(pb::CallerMessage {
        text: "Erste".into(),
        ..Default::default()
    });
    let created = create(&mut app, "acme", c).await;
    let first = created.caller_message.clone().unwrap();

    let mut change = pb::Contact {
        contact_id: created.contact_id.clone(),
        caller_message: Some(pb::CallerMessage {
            text: "Zweite".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let updated = app
        .contacts
        .update_contact(pb::UpdateContactRequest {
            account_id: "acme".into(),
            contact: Some(change.clone()),
            update_mask: mask(&["caller_message.text"]),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let second = updated.caller_message.unwrap();
    assert_eq!(second.text, "Zweite");
    assert_ne!(second.message_id, first.message_id);

    change.caller_message = None;
    let cleared = app
        .contacts
        .update_contact(pb::UpdateContactRequest {
            account_id: "acme".into(),
            contact: Some(change),
            update_mask: mask(&["caller_message"]),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.caller_message, None);
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_changes_nothing() {
    let mut app = spawn_app().await;
    let created = create(&mut app, "acme", caller("Alt", "030 1234567")).await;
    let mut change = pb::Contact {
        contact_id: created.contact_id.clone(),
        last_name: "Neu".into(),
        ..Default::default()
    };
    let first = app
        .contacts
        .update_contact(pb::UpdateContactRequest {
            account_id: "acme".into(),
            contact: Some(change.clone()),
            update_mask: mask(&["last_name"]),
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    change.last_name = "Ganz neu".into();
    let err = app
        .contacts
        .update_contact(pb::UpdateContactRequest {
            account_id: "acme".into(),
            contact: Some(change),
            update_mask: mask(&["last_name"]),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(reason(&err), "ETAG_MISMATCH");
    let err = app
        .contacts
        .delete_contact(pb::DeleteContactRequest {
            account_id: "acme".into(),
            contact_id: created.contact_id.clone(),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let now = get(&mut app, "acme", &created.contact_id).await.unwrap();
    assert_eq!(now, first);
}

#[tokio::test]
async fn another_accounts_contact_is_not_found_and_nothing_changes() {
    let mut app = spawn_app().await;
    let theirs = create(&mut app, "acme", caller("Geheim", "030 1234567")).await;
    let id = theirs.contact_id.clone();

    let e = app
        .contacts
        .get_contact(pb::GetContactRequest {
            account_id: "globex".into(),
            contact_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "CONTACT_NOT_FOUND")
    );
    let missing = app
        .contacts
        .get_contact(pb::GetContactRequest {
            account_id: "acme".into(),
            contact_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        missing.message(),
        "indistinguishable from a missing id"
    );

    let e = app
        .contacts
        .update_contact(pb::UpdateContactRequest {
            account_id: "globex".into(),
            contact: Some(pb::Contact {
                contact_id: id.clone(),
                last_name: "Übernommen".into(),
                ..Default::default()
            }),
            update_mask: mask(&["last_name"]),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = app
        .contacts
        .delete_contact(pb::DeleteContactRequest {
            account_id: "globex".into(),
            contact_id: id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let listed = app
        .contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: "globex".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.contacts.is_empty());

    let still = get(&mut app, "acme", &id).await.unwrap();
    assert_eq!(still, theirs);
}

#[tokio::test]
async fn a_replayed_request_id_returns_the_first_contact_and_writes_nothing() {
    let mut app = spawn_app().await;
    let req = pb::CreateContactRequest {
        account_id: "acme".into(),
        contact: Some(caller("Einmal", "030 1234567")),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let first = app
        .contacts
        .create_contact(req.clone())
        .await
        .unwrap()
        .into_inner();
    app.advance_days(1);
    let again = app
        .contacts
        .create_contact(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);

    let mut other = req.clone();
    other.contact.as_mut().unwrap().last_name = "Anders".into();
    let e = app.contacts.create_contact(other).await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::AlreadyExists, "REQUEST_ID_REUSED")
    );

    let all = app
        .contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.contacts.len(), 1);
}

#[tokio::test]
async fn delete_removes_the_contact() {
    let mut app = spawn_app().await;
    let c = create(&mut app, "acme", caller("Weg", "030 1234567")).await;
    app.contacts
        .delete_contact(pb::DeleteContactRequest {
            account_id: "acme".into(),
            contact_id: c.contact_id.clone(),
            etag: c.etag.clone(),
        })
        .await
        .unwrap();
    let e = app
        .contacts
        .get_contact(pb::GetContactRequest {
            account_id: "acme".into(),
            contact_id: c.contact_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = app
        .contacts
        .delete_contact(pb::DeleteContactRequest {
            account_id: "acme".into(),
            contact_id: c.contact_id,
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn lists_page_through_a_category_with_tokens_while_rows_are_inserted() {
    let mut app = spawn_app().await;
    let mut callers = std::collections::HashSet::new();
    for i in 0..23 {
        let c = create(
            &mut app,
            "acme",
            caller(&format!("Anrufer{i}"), "030 1234567"),
        )
        .await;
        callers.insert(c.contact_id);
        let mut other = caller(&format!("Kunde{i}"), "030 1234567");
        other.categories = vec!["customer".into()];
        create(&mut app, "acme", other).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .contacts
            .list_contacts(pb::ListContactsRequest {
                account_id: "acme".into(),
                category: "caller".into(),
                page_size: 5,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.contacts.len() <= 5);
        assert!(
            page.contacts
                .iter()
                .all(|c| c.categories.contains(&"caller".to_string()))
        );
        seen.extend(page.contacts.into_iter().map(|c| c.contact_id));
        create(&mut app, "acme", caller("Neu", "030 1234567")).await;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let unique: std::collections::HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no contact twice");
    assert!(callers.is_subset(&unique), "every pre-existing caller once");
}

#[tokio::test]
async fn a_page_token_of_another_query_is_refused() {
    let mut app = spawn_app().await;
    for i in 0..3 {
        create(&mut app, "acme", caller(&format!("N{i}"), "030 1234567")).await;
    }
    let page = app
        .contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: "acme".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!page.next_page_token.is_empty());
    for (account, category, token) in [
        ("globex", "", page.next_page_token.clone()),
        ("acme", "caller", page.next_page_token.clone()),
        ("acme", "", "forged".to_string()),
    ] {
        let e = app
            .contacts
            .list_contacts(pb::ListContactsRequest {
                account_id: account.into(),
                category: category.into(),
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&e), ["page_token"]);
    }
}

#[tokio::test]
async fn expiring_contacts_are_listed_soonest_first() {
    let mut app = spawn_app().await;
    let oldest = create(&mut app, "acme", caller("Alt", "030 1234567")).await;
    app.advance_days(5);
    let older = create(&mut app, "acme", caller("Mittel", "030 1234567")).await;
    let mut kept = caller("Behalten", "030 1234567");
    kept.keep_permanently = true;
    create(&mut app, "acme", kept).await;
    app.advance_days(20);
    create(&mut app, "acme", caller("Frisch", "030 1234567")).await;
    app.advance_days(160); // oldest: 185 days idle (overdue); older: 180
    let list = |within: i32| pb::ListExpiringContactsRequest {
        account_id: "acme".into(),
        within_days: within,
        page_size: 1,
        page_token: String::new(),
    };
    let first = app
        .contacts
        .list_expiring_contacts(list(3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.contacts[0].contact_id, oldest.contact_id);
    let mut next = list(3);
    next.page_token = first.next_page_token;
    let second = app
        .contacts
        .list_expiring_contacts(next)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.contacts[0].contact_id, older.contact_id);
    assert!(second.next_page_token.is_empty());
    let e = app
        .contacts
        .list_expiring_contacts(list(0))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["within_days"]);
}

#[tokio::test]
async fn bad_requests_name_every_bad_field_and_write_nothing() {
    let mut app = spawn_app().await;
    let mut c = caller(&"x".repeat(201), "nicht 123");
    c.categories = vec!["Caller".into()];
    c.email = "kaputt".into();
    c.account_id = "other".into();
    let e = app
        .contacts
        .create_contact(pb::CreateContactRequest {
            account_id: "acme".into(),
            contact: Some(c),
            request_id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    let mut fields = bad_fields(&e);
    fields.sort();
    assert_eq!(
        fields,
        [
            "contact.account_id",
            "contact.categories[0]",
            "contact.email",
            "contact.last_name",
            "contact.phone_numbers[0].number",
            "request_id"
        ]
    );
    for (req, field) in [
        (
            pb::CreateContactRequest {
                account_id: "bad account".into(),
                contact: Some(caller("A", "030 1234567")),
                request_id: String::new(),
            },
            "account_id",
        ),
        (
            pb::CreateContactRequest {
                account_id: "acme".into(),
                contact: None,
                request_id: String::new(),
            },
            "contact",
        ),
        (
            pb::CreateContactRequest {
                account_id: "acme".into(),
                contact: Some(pb::Contact {
                    email: "nur@mail.de".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "contact",
        ),
    ] {
        let e = app.contacts.create_contact(req).await.unwrap_err();
        assert_eq!(bad_fields(&e), [field]);
    }
    let e = app
        .contacts
        .get_contact(pb::GetContactRequest {
            account_id: "acme".into(),
            contact_id: "123".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["contact_id"]);
    let created = create(&mut app, "acme", caller("A", "030 1234567")).await;
    for (paths, field) in [
        (vec![], "update_mask"),
        (vec!["etag"], "update_mask.paths[0]"),
    ] {
        let e = app
            .contacts
            .update_contact(pb::UpdateContactRequest {
                account_id: "acme".into(),
                contact: Some(pb::Contact {
                    contact_id: created.contact_id.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&paths),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&e), [field]);
    }
    // Clearing the last thing that identifies the contact is refused as a whole.
    let e = app
        .contacts
        .update_contact(pb::UpdateContactRequest {
            account_id: "acme".into(),
            contact: Some(pb::Contact {
                contact_id: created.contact_id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["first_name", "last_name", "phone_numbers"]),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["contact"]);
    let e = app
        .contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: "acme".into(),
            page_size: -1,
            category: "Nope!".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["page_size", "category"]);

    let all = app
        .contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.contacts.len(), 1, "only the one valid create wrote");
    assert_eq!(all.contacts[0], created);
}
