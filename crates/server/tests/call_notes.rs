//! CallNoteService as a client sees it: notes, linking, and exactly-once message delivery.

use callers_proto::v1 as pb;
use callers_testkit::app::note as write_note;
use callers_testkit::app::{TestApp, bad_fields, caller, create, get, reason, spawn_app};
use std::collections::HashSet;
use tonic::Code;
use tonic_types::StatusExt;

fn note_for(contact_id: &str) -> pb::CallNote {
    pb::CallNote {
        contact_id: contact_id.into(),
        employee_id: "emp-1".into(),
        agent_id: "agent-1".into(),
        subject: "Anruf".into(),
        text: "Rückruf erbeten".into(),
        ..Default::default()
    }
}

async fn caller_with_message(app: &mut TestApp, account: &str) -> pb::Contact {
    let mut c = caller("Müller", "030 1234567");
    c.caller_message = Some(pb::CallerMessage {
        text: "Die Unterlagen sind angekommen".into(),
        ..Default::default()
    });
    create(app, account, c).await
}

fn deliver(
    contact: &pb::Contact,
    note_id: &str,
    request_id: &str,
) -> pb::DeliverCallerMessageRequest {
    pb::DeliverCallerMessageRequest {
        account_id: contact.account_id.clone(),
        contact_id: contact.contact_id.clone(),
        message_id: contact.caller_message.as_ref().unwrap().message_id.clone(),
        call_note_id: note_id.into(),
        agent_id: "agent-1".into(),
        request_id: request_id.into(),
    }
}

#[tokio::test]
async fn fifty_agents_delivering_one_message_deliver_it_exactly_once() {
    let mut app = spawn_app().await;
    let contact = caller_with_message(&mut app, "acme").await;
    let mut notes = Vec::new();
    for _ in 0..50 {
        let n = write_note(&mut app, "acme", note_for(&contact.contact_id)).await;
        notes.push(n.call_note.unwrap().call_note_id);
    }
    let tasks: Vec<_> = notes
        .iter()
        .map(|note_id| {
            let mut client = app.notes.clone();
            let req = deliver(&contact, note_id, &uuid::Uuid::new_v4().to_string());
            tokio::spawn(async move { client.deliver_caller_message(req).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut named_notes = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => winners.push(r.into_inner()),
            Err(e) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
                assert_eq!(reason(&e), "MESSAGE_NOT_PENDING");
                let info = e.get_details_error_info().unwrap();
                named_notes.insert(info.metadata.get("call_note_id").cloned().unwrap());
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one delivery succeeds");
    let won = &winners[0];
    let won_note = won.call_note.as_ref().unwrap();
    assert_eq!(won_note.deliveries.len(), 1);
    assert_eq!(
        won_note.deliveries[0].text,
        "Die Unterlagen sind angekommen"
    );
    assert_eq!(won_note.deliveries[0].agent_id, "agent-1");
    assert_eq!(won.contact.as_ref().unwrap().caller_message, None);
    assert_eq!(
        named_notes,
        HashSet::from([won_note.call_note_id.clone()]),
        "every refusal names the note that got the message"
    );
    let mut total = 0;
    for id in &notes {
        let n = app
            .notes
            .get_call_note(pb::GetCallNoteRequest {
                account_id: "acme".into(),
                call_note_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        total += n.deliveries.len();
    }
    assert_eq!(total, 1, "one delivery across all notes");
    let now = get(&mut app, "acme", &contact.contact_id).await.unwrap();
    assert_eq!(now.caller_message, None);
}

#[tokio::test]
async fn a_retried_delivery_returns_the_first_result_and_writes_nothing() {
    let mut app = spawn_app().await;
    let contact = caller_with_message(&mut app, "acme").await;
    let note = write_note(&mut app, "acme", note_for(&contact.contact_id)).await;
    let note_id = note.call_note.unwrap().call_note_id;
    let req = deliver(&contact, &note_id, &uuid::Uuid::new_v4().to_string());
    let first = app
        .notes
        .deliver_caller_message(req.clone())
        .await
        .unwrap()
        .into_inner();
    app.advance_days(1);
    let again = app
        .notes
        .deliver_caller_message(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    // Another attempt without the key is refused: the message is gone.
    let mut other = req.clone();
    other.request_id = String::new();
    let e = app.notes.deliver_caller_message(other).await.unwrap_err();
    assert_eq!(reason(&e), "MESSAGE_NOT_PENDING");
    let n = app
        .notes
        .get_call_note(pb::GetCallNoteRequest {
            account_id: "acme".into(),
            call_note_id: note_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.deliveries.len(), 1);
}

#[tokio::test]
async fn concurrent_creates_with_one_request_id_make_one_note() {
    let mut app = spawn_app().await;
    let contact = create(&mut app, "acme", caller("Schmidt", "030 1234567")).await;
    let req = pb::CreateCallNoteRequest {
        account_id: "acme".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        call_note: Some(note_for(&contact.contact_id)),
    };
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let mut client = app.notes.clone();
            let req = req.clone();
            tokio::spawn(async move { client.create_call_note(req).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(
            t.await
                .unwrap()
                .unwrap()
                .into_inner()
                .call_note
                .unwrap()
                .call_note_id,
        );
    }
    assert_eq!(ids.len(), 1);
    let list = app
        .notes
        .list_call_notes(pb::ListCallNotesRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.call_notes.len(), 1);
}

#[tokio::test]
async fn activity_moves_on_link_and_delivery_never_on_reads() {
    let mut app = spawn_app().await;
    let contact = caller_with_message(&mut app, "acme").await;
    let t0 = contact.last_activity_time.unwrap().seconds;
    app.advance_days(3);
    get(&mut app, "acme", &contact.contact_id).await.unwrap();
    app.contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let read = get(&mut app, "acme", &contact.contact_id).await.unwrap();
    assert_eq!(
        read.last_activity_time.unwrap().seconds,
        t0,
        "reads are no activity"
    );

    let linked = write_note(&mut app, "acme", note_for(&contact.contact_id)).await;
    let after_link = linked.contact.unwrap().last_activity_time.unwrap().seconds;
    assert_eq!(after_link, t0 + 3 * 86_400);

    app.advance_days(2);
    let note_id = linked.call_note.unwrap().call_note_id;
    let done = app
        .notes
        .deliver_caller_message(deliver(&contact, &note_id, ""))
        .await
        .unwrap()
        .into_inner();
    let after_delivery = done.contact.unwrap().last_activity_time.unwrap().seconds;
    assert_eq!(after_delivery, t0 + 5 * 86_400);
}

#[tokio::test]
async fn a_note_without_contact_links_the_one_matching_caller_or_creates_one() {
    let mut app = spawn_app().await;
    let known = create(&mut app, "acme", caller("Müller", "+49 30 1234567")).await;
    // Same number in another format and the name spelt another way: the known caller.
    let r = write_note(
        &mut app,
        "acme",
        by_caller("Hans", "Mueller", "030/123 45 67"),
    )
    .await;
    assert!(!r.contact_created);
    assert_eq!(r.contact.unwrap().contact_id, known.contact_id);
    assert_eq!(r.call_note.unwrap().contact_id, known.contact_id);

    // Same number, another person: a new caller contact.
    let r = write_note(&mut app, "acme", by_caller("Eva", "Müller", "030 1234567")).await;
    assert!(r.contact_created);
    let created = r.contact.unwrap();
    assert_ne!(created.contact_id, known.contact_id);
    assert_eq!(created.categories, ["caller"]);
    assert_eq!(created.origin, pb::Origin::CallNote as i32);
    assert_eq!(created.phone_numbers[0].e164, "+49301234567");
    assert!(created.purge_time.is_some());

    // Nobody identifiable: the note stands alone.
    let r = write_note(&mut app, "acme", by_caller("", "", "anonymous")).await;
    assert!(!r.contact_created);
    assert!(r.contact.is_none());
    assert_eq!(r.call_note.unwrap().contact_id, "");
}

#[tokio::test]
async fn another_accounts_note_cannot_be_read_listed_or_used() {
    let mut app = spawn_app().await;
    let theirs = caller_with_message(&mut app, "acme").await;
    let note = write_note(&mut app, "acme", note_for(&theirs.contact_id)).await;
    let note_id = note.call_note.unwrap().call_note_id;
    let mine = caller_with_message(&mut app, "globex").await;

    let e = app
        .notes
        .get_call_note(pb::GetCallNoteRequest {
            account_id: "globex".into(),
            call_note_id: note_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "CALL_NOTE_NOT_FOUND")
    );
    for filter in ["", theirs.contact_id.as_str()] {
        let list = app
            .notes
            .list_call_notes(pb::ListCallNotesRequest {
                account_id: "globex".into(),
                contact_id: filter.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(list.call_notes.is_empty());
    }
    // Their note for my contact, and their contact with my account: both unknown here.
    let e = app
        .notes
        .deliver_caller_message(deliver(&mine, &note_id, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let mut cross = deliver(&theirs, &note_id, "");
    cross.account_id = "globex".into();
    let e = app.notes.deliver_caller_message(cross).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = app
        .notes
        .create_call_note(pb::CreateCallNoteRequest {
            account_id: "globex".into(),
            request_id: String::new(),
            call_note: Some(note_for(&theirs.contact_id)),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "CONTACT_NOT_FOUND")
    );
    let still = get(&mut app, "acme", &theirs.contact_id).await.unwrap();
    assert_eq!(
        still.caller_message, theirs.caller_message,
        "their message is untouched"
    );
}

#[tokio::test]
async fn a_note_linked_to_another_contact_is_refused_and_an_unlinked_one_gets_linked() {
    let mut app = spawn_app().await;
    let contact = caller_with_message(&mut app, "acme").await;
    let other = create(&mut app, "acme", caller("Anders", "030 7654321")).await;
    let foreign = write_note(&mut app, "acme", note_for(&other.contact_id)).await;
    let e = app
        .notes
        .deliver_caller_message(deliver(
            &contact,
            &foreign.call_note.unwrap().call_note_id,
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "CALL_NOTE_OF_OTHER_CONTACT")
    );

    let loose = write_note(
        &mut app,
        "acme",
        pb::CallNote {
            agent_id: "agent-1".into(),
            subject: "ohne Anrufer".into(),
            ..Default::default()
        },
    )
    .await;
    let done = app
        .notes
        .deliver_caller_message(deliver(
            &contact,
            &loose.call_note.unwrap().call_note_id,
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.call_note.unwrap().contact_id, contact.contact_id);
}

#[tokio::test]
async fn deleting_a_contact_keeps_its_notes_unlinked() {
    let mut app = spawn_app().await;
    let contact = create(&mut app, "acme", caller("Weg", "030 1234567")).await;
    let note = write_note(&mut app, "acme", note_for(&contact.contact_id)).await;
    app.contacts
        .delete_contact(pb::DeleteContactRequest {
            account_id: "acme".into(),
            contact_id: contact.contact_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let n = app
        .notes
        .get_call_note(pb::GetCallNoteRequest {
            account_id: "acme".into(),
            call_note_id: note.call_note.unwrap().call_note_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.contact_id, "");
    assert_eq!(n.subject, "Anruf");
}

#[tokio::test]
async fn notes_list_newest_call_first_with_filters_and_stable_pages() {
    let mut app = spawn_app().await;
    let a = create(&mut app, "acme", caller("A", "030 1234567")).await;
    let b = create(&mut app, "acme", caller("B", "030 7654321")).await;
    let mut a_notes = Vec::new();
    for i in 0..7 {
        let mut n = note_for(&a.contact_id);
        n.call_time = Some(prost_types::Timestamp {
            seconds: 1_770_000_000 + i * 60,
            nanos: 0,
        });
        n.employee_id = if i % 2 == 0 { "emp-even" } else { "emp-odd" }.into();
        a_notes.push(
            write_note(&mut app, "acme", n)
                .await
                .call_note
                .unwrap()
                .call_note_id,
        );
        write_note(&mut app, "acme", note_for(&b.contact_id)).await;
    }
    a_notes.reverse(); // newest call first
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .notes
            .list_call_notes(pb::ListCallNotesRequest {
                account_id: "acme".into(),
                contact_id: a.contact_id.clone(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.call_notes.into_iter().map(|n| n.call_note_id));
        write_note(&mut app, "acme", note_for(&a.contact_id)).await; // newer: not in this walk
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, a_notes);
    let even = app
        .notes
        .list_call_notes(pb::ListCallNotesRequest {
            account_id: "acme".into(),
            contact_id: a.contact_id.clone(),
            employee_id: "emp-even".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(even.call_notes.len(), 4);
}

#[tokio::test]
async fn bad_call_note_requests_name_their_fields() {
    let mut app = spawn_app().await;
    let e = app
        .notes
        .create_call_note(pb::CreateCallNoteRequest {
            account_id: "acme".into(),
            request_id: "x".into(),
            call_note: Some(pb::CallNote {
                subject: "s".repeat(301),
                contact_id: "nope".into(),
                call_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    let mut f = bad_fields(&e);
    f.sort();
    assert_eq!(
        f,
        [
            "call_note.call_time",
            "call_note.contact_id",
            "call_note.subject",
            "request_id"
        ]
    );
    let e = app
        .notes
        .deliver_caller_message(pb::DeliverCallerMessageRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&e),
        ["contact_id", "message_id", "call_note_id", "agent_id"]
    );
    let list = app
        .notes
        .list_call_notes(pb::ListCallNotesRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(list.call_notes.is_empty(), "nothing written");
}

fn by_caller(first: &str, last: &str, number: &str) -> pb::CallNote {
    pb::CallNote {
        caller_first_name: first.into(),
        caller_last_name: last.into(),
        caller_number: number.into(),
        agent_id: "agent-1".into(),
        ..Default::default()
    }
}

/// Which contact a note about this caller was linked to; `None` when one was created.
async fn linked(app: &mut TestApp, account: &str, note: pb::CallNote) -> Option<String> {
    let r = write_note(app, account, note).await;
    let id = r.call_note.unwrap().contact_id;
    (!r.contact_created).then_some(id)
}

#[tokio::test]
async fn a_note_with_a_name_only_links_only_the_one_contact_of_exactly_that_name() {
    let mut app = spawn_app().await;
    let mut karge = caller("Karge", "+49 30 1111111");
    karge.first_name = "Petra".into();
    let karge = create(&mut app, "a", karge).await;
    // The whole name, the one contact who has it.
    assert_eq!(
        linked(&mut app, "a", by_caller("Petra", "Karge", "")).await,
        Some(karge.contact_id.clone())
    );
    // Umlauts typed without them are the same name.
    let mut mueller = caller("Müller", "+49 30 2222222");
    mueller.first_name = "Jürgen".into();
    let mueller = create(&mut app, "b", mueller).await;
    assert_eq!(
        linked(&mut app, "b", by_caller("Juergen", "Mueller", "")).await,
        Some(mueller.contact_id)
    );

    // A surname alone, a typo, another first name, a spelling that may be another family:
    // not certain, so a new contact each (in accounts of their own, so that one new contact
    // does not change the next case).
    for (account, first, last) in [
        ("c", "", "Karge"),
        ("d", "Petra", "Krage"),
        ("e", "Eva", "Karge"),
        ("f", "Petra", "Kahrge"),
    ] {
        create(&mut app, account, {
            let mut c = caller("Karge", "+49 30 1111111");
            c.first_name = "Petra".into();
            c
        })
        .await;
        assert_eq!(
            linked(&mut app, account, by_caller(first, last, "")).await,
            None,
            "{first} {last}"
        );
    }
}

#[tokio::test]
async fn namesakes_are_told_apart_by_their_numbers_or_not_linked_at_all() {
    let mut app = spawn_app().await;
    let berlin = create(&mut app, "a", caller("Weber", "+49 30 3333333")).await;
    let hamburg = create(&mut app, "a", caller("Weber", "+49 40 4444444")).await;
    // "Hans Weber" twice: the name alone cannot say which.
    assert_eq!(
        linked(&mut app, "a", by_caller("Hans", "Weber", "")).await,
        None
    );
    // The number can, also with a typo in the name or no name at all.
    assert_eq!(
        linked(&mut app, "a", by_caller("Hans", "Weber", "040 4444444")).await,
        Some(hamburg.contact_id.clone())
    );
    assert_eq!(
        linked(&mut app, "a", by_caller("Hans", "Webber", "030 3333333")).await,
        Some(berlin.contact_id.clone())
    );
    assert_eq!(
        linked(&mut app, "a", by_caller("", "", "+49 40 4444444")).await,
        Some(hamburg.contact_id)
    );
    // Another person on the number: a new contact, not the namesake.
    assert_eq!(
        linked(&mut app, "a", by_caller("Eva", "Schulz", "030 3333333")).await,
        None
    );
}
