//! CallHandlingService as a customer's settings page sees it.

use callers_testkit::app;

use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_testkit::app::{bad_fields, create, reason, spawn_app};
use pb::{ConversationStyle, FindingCode};
use prost_types::FieldMask;
use tonic::Code;
use tonic::transport::Channel;

type Client = CallHandlingServiceClient<Channel>;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn employee(id: &str, style: ConversationStyle, cid: Option<bool>) -> pb::EmployeeCallHandling {
    pb::EmployeeCallHandling {
        employee_id: id.into(),
        conversation_style: style as i32,
        caller_id_transmission: cid,
    }
}

async fn update(
    client: &mut Client,
    settings: pb::CallHandling,
    paths: &[&str],
    etag: &str,
) -> Result<pb::CallHandling, tonic::Status> {
    client
        .update_call_handling(pb::UpdateCallHandlingRequest {
            call_handling: Some(settings),
            update_mask: mask(paths),
            etag: etag.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn read(client: &mut Client, account: &str) -> Result<pb::CallHandling, tonic::Status> {
    client
        .get_call_handling(pb::GetCallHandlingRequest {
            account_id: account.into(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn settings_are_not_found_until_the_first_update_creates_them() {
    let app = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let e = read(&mut client, "acme").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(reason(&e), "CALL_HANDLING_NOT_FOUND");

    let created = update(
        &mut client,
        pb::CallHandling {
            account_id: "acme".into(),
            caller_id_transmission: true,
            conversation_style: ConversationStyle::Formal as i32,
            ..Default::default()
        },
        &["caller_id_transmission"],
        "",
    )
    .await
    .unwrap();
    assert_eq!(created.account_id, "acme");
    assert!(created.caller_id_transmission);
    assert_eq!(
        created.conversation_style,
        ConversationStyle::Unspecified as i32,
        "not in the mask, so the default"
    );
    assert_eq!(created.phone_region, "DE", "the server's default region");
    assert!(created.employees.is_empty());
    assert!(!created.etag.is_empty());
    assert_eq!(
        created.update_time.as_ref().unwrap().seconds,
        app.clock_now().timestamp()
    );
    assert_eq!(read(&mut client, "acme").await.unwrap(), created);
    // Other accounts still have none.
    let e = read(&mut client, "globex").await.unwrap_err();
    assert_eq!(reason(&e), "CALL_HANDLING_NOT_FOUND");
}

#[tokio::test]
async fn an_update_changes_only_masked_fields_and_a_stale_etag_changes_nothing() {
    let app = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let all = pb::CallHandling {
        account_id: "acme".into(),
        conversation_style: ConversationStyle::Formal as i32,
        caller_id_transmission: true,
        phone_region: "at".into(),
        employees: vec![employee("e1", ConversationStyle::Informal, None)],
        ..Default::default()
    };
    // An empty mask means every field.
    let first = update(&mut client, all, &[], "").await.unwrap();
    assert_eq!(first.phone_region, "AT");
    assert_eq!(first.employees.len(), 1);

    let change = pb::CallHandling {
        account_id: "acme".into(),
        conversation_style: ConversationStyle::Informal as i32,
        phone_region: "CH".into(),
        ..Default::default()
    };
    let second = update(
        &mut client,
        change.clone(),
        &["conversation_style"],
        &first.etag,
    )
    .await
    .unwrap();
    assert_eq!(
        second.conversation_style,
        ConversationStyle::Informal as i32
    );
    assert_eq!(second.phone_region, "AT");
    assert!(second.caller_id_transmission);
    assert_eq!(second.employees, first.employees);
    assert_ne!(second.etag, first.etag);

    let e = update(&mut client, change.clone(), &["phone_region"], &first.etag)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert_eq!(reason(&e), "ETAG_MISMATCH");
    assert_eq!(read(&mut client, "acme").await.unwrap(), second);

    // The etag may also come inside the resource, as it was read.
    let mut inside = change;
    inside.etag = first.etag.clone();
    let e = update(&mut client, inside, &["phone_region"], "")
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "ETAG_MISMATCH");

    // An etag for settings that do not exist yet is stale as well, and creates nothing.
    let e = update(
        &mut client,
        pb::CallHandling {
            account_id: "globex".into(),
            ..Default::default()
        },
        &[],
        &first.etag,
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&e), "ETAG_MISMATCH");
    assert_eq!(
        read(&mut client, "globex").await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn the_employee_list_is_replaced_as_a_whole_and_emptied_to_remove_overrides() {
    let app = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let with = |employees| pb::CallHandling {
        account_id: "acme".into(),
        employees,
        ..Default::default()
    };
    let s = update(
        &mut client,
        with(vec![
            employee("e1", ConversationStyle::Informal, Some(false)),
            employee("e2", ConversationStyle::Unspecified, Some(true)),
        ]),
        &["employees"],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        s.employees
            .iter()
            .map(|e| &e.employee_id[..])
            .collect::<Vec<_>>(),
        ["e1", "e2"]
    );
    assert_eq!(s.employees[1].caller_id_transmission, Some(true));
    assert_eq!(s.employees[1].conversation_style, 0);

    let replaced = vec![employee("e3", ConversationStyle::Formal, None)];
    let s = update(&mut client, with(replaced.clone()), &["employees"], "")
        .await
        .unwrap();
    assert_eq!(s.employees, replaced);

    // A mask without `employees` leaves them, whatever the request carries.
    let s = update(&mut client, with(vec![]), &["caller_id_transmission"], "")
        .await
        .unwrap();
    assert_eq!(s.employees, replaced);

    let s = update(&mut client, with(vec![]), &["employees"], "")
        .await
        .unwrap();
    assert!(s.employees.is_empty());
    assert_eq!(read(&mut client, "acme").await.unwrap(), s);
}

#[tokio::test]
async fn the_phone_region_decides_how_national_numbers_are_read() {
    let mut app = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let region = |r: &str| pb::CallHandling {
        account_id: "acme".into(),
        phone_region: r.into(),
        ..Default::default()
    };
    for bad in ["XX", "DEU", "1", "Deutschland"] {
        let e = update(&mut client, region(bad), &["phone_region"], "")
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&e), ["call_handling.phone_region"], "{bad}");
    }
    update(&mut client, region("ch"), &["phone_region"], "")
        .await
        .unwrap();
    let mut c = app::caller("Meier", "044 668 18 00");
    c.salutation.clear();
    let stored = create(&mut app, "acme", c).await;
    assert_eq!(stored.phone_numbers[0].e164, "+41446681800");

    let back = update(&mut client, region(""), &["phone_region"], "")
        .await
        .unwrap();
    assert_eq!(back.phone_region, "DE", "empty means the server's default");
}

#[tokio::test]
async fn bad_requests_name_every_bad_field_and_write_nothing() {
    let app = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let e = client
        .update_call_handling(pb::UpdateCallHandlingRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["call_handling"]);

    let e = update(
        &mut client,
        pb::CallHandling {
            account_id: "no spaces".into(),
            conversation_style: 9,
            employees: vec![
                employee("", ConversationStyle::Formal, None),
                employee("e1", ConversationStyle::Formal, None),
                employee("e1", ConversationStyle::Informal, None),
                pb::EmployeeCallHandling {
                    employee_id: "e2".into(),
                    conversation_style: 7,
                    caller_id_transmission: None,
                },
            ],
            ..Default::default()
        },
        &[],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(
        bad_fields(&e),
        [
            "call_handling.account_id",
            "call_handling.conversation_style",
            "call_handling.employees[0].employee_id",
            "call_handling.employees[2].employee_id",
            "call_handling.employees[3].conversation_style",
        ]
    );

    let e = update(
        &mut client,
        pb::CallHandling {
            account_id: "acme".into(),
            ..Default::default()
        },
        &["conversation_style", "etag", "account_id"],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(
        bad_fields(&e),
        ["update_mask.paths[1]", "update_mask.paths[2]"]
    );
    assert_eq!(
        read(&mut client, "acme").await.unwrap_err().code(),
        Code::NotFound
    );

    for e in [
        read(&mut client, "").await.unwrap_err(),
        client
            .check_caller_recognition(pb::CheckCallerRecognitionRequest {
                account_id: "acme".into(),
                employee_id: "x".repeat(129),
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn recognition_explains_what_to_change() {
    let app = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let check = |employee: &str| pb::CheckCallerRecognitionRequest {
        account_id: "acme".into(),
        employee_id: employee.into(),
    };
    let unknown = client
        .check_caller_recognition(check(""))
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.ready);
    assert_eq!(
        unknown.findings.iter().map(|f| f.code).collect::<Vec<_>>(),
        [FindingCode::SettingsUnknown as i32]
    );

    update(
        &mut client,
        pb::CallHandling {
            account_id: "acme".into(),
            conversation_style: ConversationStyle::Formal as i32,
            caller_id_transmission: true,
            employees: vec![employee("e1", ConversationStyle::Informal, Some(false))],
            ..Default::default()
        },
        &[],
        "",
    )
    .await
    .unwrap();
    let ready = client
        .check_caller_recognition(check(""))
        .await
        .unwrap()
        .into_inner();
    assert!(ready.ready);
    assert!(ready.findings.is_empty());
    let e1 = client
        .check_caller_recognition(check("e1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!e1.ready);
    let findings: Vec<_> = e1
        .findings
        .iter()
        .map(|f| (f.code, f.employee_id.as_str()))
        .collect();
    assert_eq!(
        findings,
        [
            (FindingCode::ConversationStyleNotFormal as i32, "e1"),
            (FindingCode::CallerIdNotTransmitted as i32, "e1"),
        ]
    );
    assert!(e1.findings[0].message.contains("formal"));
    assert!(e1.findings[1].message.contains("caller-ID"));
}
