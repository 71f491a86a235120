//! IdentificationService as telephony and the agent's screen see it.

use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_server::auth::Authenticator;
use callers_testkit::app::{TestApp, bad_fields, create, get, spawn_app, spawn_app_with};
use pb::{ConversationStyle, FindingCode, MatchKind};
use sha2::{Digest, Sha256};
use tonic::Code;

fn person(first: &str, last: &str, company: &str, numbers: &[&str]) -> pb::Contact {
    pb::Contact {
        categories: vec!["caller".into()],
        first_name: first.into(),
        last_name: last.into(),
        company: company.into(),
        phone_numbers: numbers
            .iter()
            .map(|n| pb::PhoneNumber {
                number: (*n).into(),
                r#type: pb::PhoneType::Landline as i32,
                ..Default::default()
            })
            .collect(),
        origin: pb::Origin::Manual as i32,
        ..Default::default()
    }
}

fn request(account: &str, number: &str, name: &str) -> pb::IdentifyCallerRequest {
    pb::IdentifyCallerRequest {
        account_id: account.into(),
        caller_number: number.into(),
        caller_name: name.into(),
        ..Default::default()
    }
}

async fn identify(app: &TestApp, req: pb::IdentifyCallerRequest) -> pb::IdentifyCallerResponse {
    IdentificationServiceClient::new(app.channel.clone())
        .identify_caller(req)
        .await
        .unwrap()
        .into_inner()
}

/// "First Last" or the company, per match, best first.
fn who(resp: &pb::IdentifyCallerResponse) -> Vec<String> {
    resp.matches
        .iter()
        .map(|m| {
            let c = m.contact.as_ref().unwrap();
            format!("{} {} {}", c.first_name, c.last_name, c.company)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn kinds(resp: &pb::IdentifyCallerResponse) -> Vec<MatchKind> {
    resp.matches
        .iter()
        .map(|m| MatchKind::try_from(m.matched_by).unwrap())
        .collect()
}

fn assert_best_first(resp: &pb::IdentifyCallerResponse) {
    for m in &resp.matches {
        assert!((0.0..=1.0).contains(&m.score), "{m:?}");
    }
    for pair in resp.matches.windows(2) {
        assert!(pair[0].score >= pair[1].score, "{:?}", who(resp));
    }
}

#[tokio::test]
async fn number_shapes_as_telephony_delivers_them_find_the_caller() {
    let mut app = spawn_app().await;
    let stored = create(
        &mut app,
        "acme",
        person("Hans", "Müller", "", &["030 1234567"]),
    )
    .await;
    let found = [
        "+49301234567",
        "+49 30 1234567",
        "030 1234567",
        "0301234567",
        "0049 30 1234567",
        "0049301234567",
        "030-123 45 67",
        "030/1234567",
        "(030) 1234567",
        "(030) 123 45-67",
        "+49 (0)30 1234567",
        " 030 1234567 ",
    ];
    for number in found {
        let resp = identify(&app, request("acme", number, "")).await;
        assert_eq!(resp.normalized_number, "+49301234567", "{number:?}");
        assert_eq!(kinds(&resp), [MatchKind::PhoneNumber], "{number:?}");
        let contact = resp.matches[0].contact.as_ref().unwrap();
        assert_eq!(contact.contact_id, stored.contact_id, "{number:?}");
    }
    // No number, or one that cannot be read: not an error, nobody found.
    let nobody = [
        "",
        "anonymous",
        "Anonymous",
        "UNKNOWN",
        "private",
        "withheld",
        "030 CALL ME",
        "12",
        "+999 1234567",
        "0301234568",
    ];
    for number in nobody {
        let resp = identify(&app, request("acme", number, "")).await;
        assert!(resp.matches.is_empty(), "{number:?}: {:?}", who(&resp));
        if number != "0301234568" {
            assert_eq!(resp.normalized_number, "", "{number:?}");
        }
    }
    // Without a number the name still finds the caller.
    let resp = identify(&app, request("acme", "anonymous", "Herr Müller")).await;
    assert_eq!(kinds(&resp), [MatchKind::Name]);
}

#[tokio::test]
async fn national_numbers_are_read_with_the_accounts_region() {
    let mut app = spawn_app().await;
    CallHandlingServiceClient::new(app.channel.clone())
        .update_call_handling(pb::UpdateCallHandlingRequest {
            call_handling: Some(pb::CallHandling {
                account_id: "wien".into(),
                phone_region: "AT".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["phone_region".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap();
    create(
        &mut app,
        "wien",
        person("Anna", "Huber", "", &["+43 1 5123456"]),
    )
    .await;
    let resp = identify(&app, request("wien", "01 5123456", "")).await;
    assert_eq!(resp.normalized_number, "+4315123456");
    assert_eq!(who(&resp), ["Anna Huber"]);
    let resp = identify(&app, request("wien", "01 5123456", "Frau Huber")).await;
    assert_eq!(kinds(&resp), [MatchKind::PhoneNumberAndName]);
    // An account without settings reads national numbers with the server's region (DE).
    let resp = identify(&app, request("other", "030 1234567", "")).await;
    assert_eq!(resp.normalized_number, "+49301234567");
}

#[tokio::test]
async fn name_variants_find_the_caller() {
    let mut app = spawn_app().await;
    for c in [
        person("Hans", "Müller", "", &[]),
        person("Klaus", "Meier", "", &[]),
        person("Peter", "Schmidt", "", &[]),
        person("", "", "Schulze GmbH", &[]),
        person("Jörg", "Weiß", "", &[]),
        person("Anna", "Lindemann", "", &[]),
    ] {
        create(&mut app, "acme", c).await;
    }
    let cases: &[(&str, &str)] = &[
        ("Hans Müller", "Hans Müller"),
        ("Dr. Müller", "Hans Müller"),
        ("Mueller, Hans", "Hans Müller"),
        ("Muller", "Hans Müller"),
        ("MÜLLER", "Hans Müller"),
        ("Herr Hans Müller", "Hans Müller"),
        ("Hans Mueler", "Hans Müller"),
        ("Müler", "Hans Müller"),
        ("Meier", "Klaus Meier"),
        ("Meyer", "Klaus Meier"),
        ("Maier", "Klaus Meier"),
        ("Frau Mayer", "Klaus Meier"),
        ("Schmitt", "Peter Schmidt"),
        ("Schmid", "Peter Schmidt"),
        ("Schmitd", "Peter Schmidt"),
        ("Prof. Dr. Peter Schmidt", "Peter Schmidt"),
        ("Firma Schulze GmbH", "Schulze GmbH"),
        ("Schulze AG", "Schulze GmbH"),
        ("schulze e.K.", "Schulze GmbH"),
        ("Weiss", "Jörg Weiß"),
        ("Joerg Weiss", "Jörg Weiß"),
        ("Lindemann", "Anna Lindemann"),
        ("Lidemann", "Anna Lindemann"),
    ];
    for (said, expected) in cases {
        let resp = identify(&app, request("acme", "", said)).await;
        assert_eq!(
            who(&resp).first().map(String::as_str),
            Some(*expected),
            "{said:?} found {:?}",
            who(&resp)
        );
        assert_eq!(kinds(&resp)[0], MatchKind::Name, "{said:?}");
        assert_eq!(resp.normalized_number, "");
        assert_best_first(&resp);
    }
    // Names that are not any of these callers.
    for said in [
        "Schneider",
        "Bauer",
        "Herr Dr.",
        "GmbH",
        "Fischer",
        "Hans Wagner",
    ] {
        let resp = identify(&app, request("acme", "", said)).await;
        assert!(resp.matches.is_empty(), "{said:?} found {:?}", who(&resp));
    }
}

#[tokio::test]
async fn near_misses_rank_below_the_exact_name() {
    let mut app = spawn_app().await;
    for c in [
        person("", "Möller", "", &[]),
        person("", "Müller", "", &[]),
        person("", "Schulz", "", &[]),
        person("", "Scholz", "", &[]),
    ] {
        create(&mut app, "acme", c).await;
    }
    for (said, top, below) in [
        ("Müller", "Müller", "Möller"),
        ("Möller", "Möller", "Müller"),
        ("Scholz", "Scholz", "Schulz"),
        ("Schulz", "Schulz", "Scholz"),
    ] {
        let resp = identify(&app, request("acme", "", said)).await;
        let names = who(&resp);
        assert_eq!(
            names.first().map(String::as_str),
            Some(top),
            "{said}: {names:?}"
        );
        if let Some(i) = names.iter().position(|n| n == below) {
            assert!(
                resp.matches[i].score < resp.matches[0].score,
                "{said}: {below} scores as high as {top}"
            );
        }
    }
}

#[tokio::test]
async fn every_contact_on_a_shared_number_is_returned_best_name_first() {
    let mut app = spawn_app().await;
    let line = "089 7654321";
    for c in [
        person("Otto", "Krause", "", &[line]),
        person("Hans", "Müller", "", &[line, "0171 1111111"]),
        person("Anna", "Müller", "", &["0171 2222222", line]),
        person("Anna", "Müller", "", &["0171 3333333"]),
        person("Erika", "Schmidt", "", &["040 1234567"]),
    ] {
        create(&mut app, "acme", c).await;
    }
    let resp = identify(&app, request("acme", "+49 89 7654321", "Anna Müller")).await;
    assert_eq!(
        who(&resp),
        ["Anna Müller", "Hans Müller", "Otto Krause", "Anna Müller"]
    );
    assert_eq!(
        kinds(&resp),
        [
            MatchKind::PhoneNumberAndName,
            MatchKind::PhoneNumberAndName,
            MatchKind::PhoneNumber,
            MatchKind::Name,
        ]
    );
    assert_best_first(&resp);
    assert!(resp.matches[0].score > resp.matches[1].score);
    // The number-only match still outranks the perfect name on another number.
    assert!(resp.matches[2].score > resp.matches[3].score);
    let on_line = |m: &pb::CallerMatch| {
        let c = m.contact.as_ref().unwrap();
        c.phone_numbers.iter().any(|p| p.e164 == "+49897654321")
    };
    assert!(resp.matches[..3].iter().all(on_line));

    // Even a weak name match (a first name only) puts its contact first on the line.
    let resp = identify(&app, request("acme", line, "Hans")).await;
    assert_eq!(who(&resp)[0], "Hans Müller");
    assert_eq!(kinds(&resp)[0], MatchKind::PhoneNumberAndName);
    assert_eq!(kinds(&resp)[1..3], [MatchKind::PhoneNumber; 2]);
    assert_best_first(&resp);

    // Without a name: the three on the line, all found by number.
    let resp = identify(&app, request("acme", line, "")).await;
    assert_eq!(kinds(&resp), [MatchKind::PhoneNumber; 3]);
    assert!(resp.matches.iter().all(on_line));

    // A number and a name of different people: the number wins.
    let resp = identify(&app, request("acme", "040 1234567", "Otto Krause")).await;
    assert_eq!(who(&resp), ["Erika Schmidt", "Otto Krause"]);
    assert_eq!(kinds(&resp), [MatchKind::PhoneNumber, MatchKind::Name]);
}

#[tokio::test]
async fn max_results_defaults_to_5_and_is_capped_at_20() {
    let mut app = spawn_app().await;
    for i in 0..25 {
        create(
            &mut app,
            "acme",
            person(&format!("Nr{i}"), "Müller", "", &[]),
        )
        .await;
    }
    for (asked, got) in [(0, 5), (1, 1), (7, 7), (20, 20), (21, 20), (1000, 20)] {
        let mut req = request("acme", "", "Müller");
        req.max_results = asked;
        assert_eq!(identify(&app, req).await.matches.len(), got, "{asked}");
    }
}

#[tokio::test]
async fn each_match_carries_its_handling_instruction_and_pending_message() {
    let mut app = spawn_app().await;
    let mut c = person("Hans", "Müller", "", &["030 1234567"]);
    c.handling_instruction = "Immer durchstellen an Frau Lange".into();
    c.caller_message = Some(pb::CallerMessage {
        text: "Bitte Rückruf bei Herrn Schulze".into(),
        ..Default::default()
    });
    let stored = create(&mut app, "acme", c).await;
    let resp = identify(&app, request("acme", "030 1234567", "Müller")).await;
    let found = resp.matches[0].contact.as_ref().unwrap();
    assert_eq!(found, &stored);
    assert_eq!(
        found.handling_instruction,
        "Immer durchstellen an Frau Lange"
    );
    assert_eq!(
        found.caller_message.as_ref().unwrap().text,
        "Bitte Rückruf bei Herrn Schulze"
    );
}

#[tokio::test]
async fn a_number_stored_in_one_account_is_never_found_from_another() {
    let mut app = spawn_app().await;
    create(
        &mut app,
        "acme",
        person("Hans", "Müller", "", &["030 1234567"]),
    )
    .await;
    let resp = identify(&app, request("globex", "030 1234567", "Hans Müller")).await;
    assert!(resp.matches.is_empty(), "{:?}", who(&resp));
    assert_eq!(resp.normalized_number, "+49301234567");
    let own = identify(&app, request("acme", "030 1234567", "Hans Müller")).await;
    assert_eq!(kinds(&own), [MatchKind::PhoneNumberAndName]);
}

#[tokio::test]
async fn identifying_a_caller_is_not_activity() {
    let mut app = spawn_app().await;
    let stored = create(
        &mut app,
        "acme",
        person("Hans", "Müller", "", &["030 1234567"]),
    )
    .await;
    app.advance_days(30);
    for _ in 0..3 {
        let resp = identify(&app, request("acme", "030 1234567", "Hans Müller")).await;
        assert_eq!(resp.matches[0].contact.as_ref(), Some(&stored));
    }
    let read = get(&mut app, "acme", &stored.contact_id).await.unwrap();
    assert_eq!(read.last_activity_time, stored.last_activity_time);
    assert_eq!(read.purge_time, stored.purge_time);
    assert_eq!(read.etag, stored.etag);
}

#[tokio::test]
async fn bad_requests_name_every_bad_field() {
    let app = spawn_app().await;
    let mut client = IdentificationServiceClient::new(app.channel.clone());
    let e = client
        .identify_caller(pb::IdentifyCallerRequest {
            account_id: "not valid".into(),
            employee_id: "e\u{7}".into(),
            caller_number: "030 1234567".into(),
            caller_name: "x".repeat(201),
            max_results: -1,
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&e),
        ["account_id", "employee_id", "caller_name", "max_results"]
    );
    // Limits are inclusive.
    let mut ok = request("acme", "", &"ü".repeat(200));
    ok.employee_id = "e".repeat(128);
    client.identify_caller(ok).await.unwrap();
}

fn tokens_file(text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("callers-tokens-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn a_token_for_another_account_is_denied() {
    let hash = hex::encode(Sha256::digest(b"acme-secret"));
    let path = tokens_file(&format!(
        "[[tokens]]\nname = \"acme\"\nsha256 = \"{hash}\"\naccounts = [\"acme\"]\n"
    ));
    let app = spawn_app_with(Authenticator::from_file(&path).unwrap()).await;
    let _ = std::fs::remove_file(&path);
    let mut client = IdentificationServiceClient::new(app.channel.clone());
    for (account, token, code) in [
        ("globex", Some("acme-secret"), Some(Code::PermissionDenied)),
        ("acme", None, Some(Code::Unauthenticated)),
        ("acme", Some("acme-secret"), None),
    ] {
        let mut req = tonic::Request::new(request(account, "030 1234567", ""));
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let got = client
            .identify_caller(req)
            .await
            .map(|_| ())
            .map_err(|e| e.code());
        assert_eq!(got.err(), code, "{account} {token:?}");
    }
}

/// (account style, account caller ID) × (employee style, employee caller ID), the employee's
/// override winning, seen through both RPCs that report recognition.
#[tokio::test]
async fn recognition_reflects_every_combination_of_account_and_employee_settings() {
    let app = spawn_app().await;
    let mut settings = CallHandlingServiceClient::new(app.channel.clone());

    let fresh = identify(&app, request("acme", "", "")).await;
    let unknown = fresh.recognition.unwrap();
    assert!(!unknown.ready);
    assert_eq!(unknown.findings.len(), 1);
    assert_eq!(
        unknown.findings[0].code,
        FindingCode::SettingsUnknown as i32
    );
    assert!(!unknown.findings[0].message.is_empty());

    use ConversationStyle::{Formal, Informal, Unspecified};
    let mut etag = String::new();
    for acc_style in [Formal, Informal, Unspecified] {
        for acc_cid in [true, false] {
            for emp_style in [Unspecified, Formal, Informal] {
                for emp_cid in [None, Some(true), Some(false)] {
                    let updated = settings
                        .update_call_handling(pb::UpdateCallHandlingRequest {
                            call_handling: Some(pb::CallHandling {
                                account_id: "acme".into(),
                                conversation_style: acc_style as i32,
                                caller_id_transmission: acc_cid,
                                employees: vec![pb::EmployeeCallHandling {
                                    employee_id: "e1".into(),
                                    conversation_style: emp_style as i32,
                                    caller_id_transmission: emp_cid,
                                }],
                                ..Default::default()
                            }),
                            update_mask: None,
                            etag: etag.clone(),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    etag = updated.etag;

                    let style_by_emp = emp_style != Unspecified;
                    let eff_style = if style_by_emp { emp_style } else { acc_style };
                    let eff_cid = emp_cid.unwrap_or(acc_cid);
                    let mut want = Vec::new();
                    if eff_style != Formal {
                        let who = if style_by_emp { "e1" } else { "" };
                        want.push((FindingCode::ConversationStyleNotFormal as i32, who));
                    }
                    if !eff_cid {
                        let who = if emp_cid.is_some() { "e1" } else { "" };
                        want.push((FindingCode::CallerIdNotTransmitted as i32, who));
                    }
                    let case = format!("{acc_style:?} {acc_cid} / {emp_style:?} {emp_cid:?}");

                    let mut req = request("acme", "030 1234567", "Müller");
                    req.employee_id = "e1".into();
                    let via_identify = identify(&app, req).await.recognition.unwrap();
                    let via_check = settings
                        .check_caller_recognition(pb::CheckCallerRecognitionRequest {
                            account_id: "acme".into(),
                            employee_id: "e1".into(),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    // The measurement (no calls counted here) is what each read; the rest agrees.
                    let declared = |s: &pb::RecognitionStatus| pb::RecognitionStatus {
                        measurement: None,
                        ..s.clone()
                    };
                    assert_eq!(declared(&via_identify), declared(&via_check), "{case}");
                    let got: Vec<(i32, &str)> = via_check
                        .findings
                        .iter()
                        .map(|f| (f.code, f.employee_id.as_str()))
                        .collect();
                    assert_eq!(got, want, "{case}");
                    assert_eq!(via_check.ready, want.is_empty(), "{case}");
                    assert!(via_check.findings.iter().all(|f| !f.message.is_empty()));

                    // Another employee, and the account itself, see the account's settings.
                    for employee in ["e2", ""] {
                        let mut req = request("acme", "", "");
                        req.employee_id = employee.into();
                        let other = identify(&app, req).await.recognition.unwrap();
                        assert_eq!(
                            other.ready,
                            acc_style == Formal && acc_cid,
                            "{case} for {employee:?}"
                        );
                        assert!(other.findings.iter().all(|f| f.employee_id.is_empty()));
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn each_match_says_how_sure_it_is_and_why() {
    use pb::MatchConfidence as C;
    use pb::match_evidence::{Field, How};
    let mut app = spawn_app().await;
    let mut eva = person("Eva", "Meier", "", &["+49 30 5555555"]);
    eva.salutation = "Frau".into();
    eva.title = "Dr.".into();
    create(&mut app, "acme", eva).await;
    create(&mut app, "acme", person("", "", "Meier Logistik GmbH", &[])).await;
    create(&mut app, "acme", person("Hans", "Weber", "", &[])).await;
    create(&mut app, "acme", person("Hans", "Weber", "", &[])).await;

    let confidence = |r: &pb::IdentifyCallerResponse| {
        r.matches
            .iter()
            .map(|m| C::try_from(m.confidence).unwrap())
            .collect::<Vec<_>>()
    };
    // The number and a name that fits: certain; the salutation and title count.
    let r = identify(&app, request("acme", "030 5555555", "Frau Dr. Mayer")).await;
    assert_eq!(who(&r)[0], "Eva Meier");
    assert_eq!(confidence(&r)[0], C::Certain);
    assert!(!r.ambiguous);
    let why: Vec<(Field, How, &str, &str)> = r.matches[0]
        .evidence
        .iter()
        .map(|e| {
            (
                Field::try_from(e.field).unwrap(),
                How::try_from(e.how).unwrap(),
                e.caller_text.as_str(),
                e.contact_text.as_str(),
            )
        })
        .collect();
    for expected in [
        (
            Field::PhoneNumber,
            How::ExactNumber,
            "+49305555555",
            "+49305555555",
        ),
        (Field::LastName, How::SpellingVariant, "Mayer", "Meier"),
        (Field::Salutation, How::Same, "", "Frau"),
        (Field::Title, How::Same, "", "Dr."),
    ] {
        assert!(why.contains(&expected), "{expected:?} not in {why:?}");
    }
    // "Frau Meier" is a person: the company named Meier comes after her, and is only possible.
    let r = identify(&app, request("acme", "", "Frau Meier")).await;
    assert_eq!(who(&r), ["Eva Meier", "Meier Logistik GmbH"]);
    assert_eq!(confidence(&r), [C::Likely, C::Possible]);
    // "Firma Meier" is the company.
    let r = identify(&app, request("acme", "", "Firma Meier")).await;
    assert_eq!(who(&r)[0], "Meier Logistik GmbH");
    // Namesakes: likely, and too close to tell apart.
    let r = identify(&app, request("acme", "", "Hans Weber")).await;
    assert_eq!(confidence(&r), [C::Likely, C::Likely]);
    assert!(r.ambiguous);
    // A name nobody has brings at most a suggestion.
    let r = identify(&app, request("acme", "", "Jordan Weaver")).await;
    assert!(confidence(&r).iter().all(|c| *c == C::Possible), "{r:?}");
}
