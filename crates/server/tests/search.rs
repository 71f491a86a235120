//! ContactService.SearchContacts as a CRM sees it: by name or company (ranked), by number or
//! prefix, filtered, in pages that stay complete while contacts are added.

use callers_proto::v1 as pb;
use callers_testkit::app::{TestApp, caller, create, spawn_app};
use std::collections::HashSet;

fn person(first: &str, last: &str, number: &str) -> pb::Contact {
    let mut c = caller(last, number);
    c.first_name = first.into();
    c.salutation = String::new();
    if number.is_empty() {
        c.phone_numbers.clear();
    }
    c
}

fn company(name: &str, number: &str) -> pb::Contact {
    let mut c = person("", "", number);
    c.company = name.into();
    c
}

fn request(account: &str) -> pb::SearchContactsRequest {
    pb::SearchContactsRequest {
        account_id: account.into(),
        ..Default::default()
    }
}

fn query(account: &str, q: &str) -> pb::SearchContactsRequest {
    pb::SearchContactsRequest {
        query: q.into(),
        ..request(account)
    }
}

async fn search(app: &mut TestApp, req: pb::SearchContactsRequest) -> pb::SearchContactsResponse {
    app.contacts
        .search_contacts(req)
        .await
        .unwrap()
        .into_inner()
}

fn ids(r: &pb::SearchContactsResponse) -> Vec<String> {
    r.contacts.iter().map(|c| c.contact_id.clone()).collect()
}

/// Every page of `req`, `page_size` at a time, with `between` run after each page.
async fn all_pages(
    app: &mut TestApp,
    req: pb::SearchContactsRequest,
    page_size: i32,
    mut between: impl AsyncFnMut(&mut TestApp, usize),
) -> Vec<pb::SearchContactsResponse> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = search(
            app,
            pb::SearchContactsRequest {
                page_size,
                page_token: token.clone(),
                ..req.clone()
            },
        )
        .await;
        token = page.next_page_token.clone();
        pages.push(page);
        if token.is_empty() {
            return pages;
        }
        between(app, pages.len()).await;
        assert!(pages.len() < 1000, "paging does not end");
    }
}

#[tokio::test]
async fn a_name_a_company_or_a_typo_finds_the_right_contact_first() {
    let mut app = spawn_app().await;
    let a = "acme";
    let hans = create(&mut app, a, person("Hans", "Müller", "030 1234567")).await;
    let anna = create(&mut app, a, person("Anna", "Müller", "")).await;
    let kowalczyk = create(&mut app, a, person("Piotr", "Kowalczyk", "")).await;
    let acme = create(&mut app, a, company("Acme Logistik GmbH", "040 1111111")).await;
    let weber = create(&mut app, a, person("Klaus", "Weber", "")).await;
    for _ in 0..5 {
        create(&mut app, a, person("Heinz", "Schmidt", "")).await;
    }
    let cases = [
        ("Kowalczyk", &kowalczyk),
        ("Kowalcyk", &kowalczyk),
        ("Anna Müller", &anna),
        ("Hans Mueller", &hans),
        ("Acme Logistik", &acme),
        ("Weeber", &weber),
        ("Klaus Weber", &weber),
    ];
    for (q, want) in cases {
        let got = search(&mut app, query(a, q)).await;
        assert_eq!(
            got.contacts.first().map(|c| &c.contact_id),
            Some(&want.contact_id),
            "{q}: {:?}",
            got.contacts
                .iter()
                .map(|c| (&c.first_name, &c.last_name, &c.company))
                .collect::<Vec<_>>()
        );
        assert_eq!(got.scores.len(), got.contacts.len(), "{q}");
        assert!(
            got.scores.windows(2).all(|w| w[0] >= w[1]),
            "{q}: best first {:?}",
            got.scores
        );
        assert!(got.scores.iter().all(|s| (0.0..=0.65).contains(s)), "{q}");
        assert!(got.next_page_token.is_empty());
    }
    // Both Müllers for the surname; Schmidt never.
    let got = search(&mut app, query(a, "Müller")).await;
    let found: HashSet<_> = ids(&got).into_iter().collect();
    assert_eq!(
        found,
        HashSet::from([hans.contact_id.clone(), anna.contact_id.clone()])
    );
    // Words that say nothing alone find nothing rather than everything.
    assert!(
        search(&mut app, query(a, "Herr Dr."))
            .await
            .contacts
            .is_empty()
    );
    assert!(
        search(&mut app, query(a, "Zzyzx"))
            .await
            .contacts
            .is_empty()
    );
}

#[tokio::test]
async fn a_number_finds_its_contacts_exactly_or_by_prefix_newest_first() {
    let mut app = spawn_app().await;
    let a = "acme";
    let berlin1 = create(&mut app, a, person("Hans", "Müller", "030 1234567")).await;
    let berlin2 = create(&mut app, a, person("Eva", "Braun", "+49 30 7654321")).await;
    let hamburg = create(&mut app, a, company("Hafen AG", "040 1111111")).await;
    let vienna = create(&mut app, a, company("Rathaus", "+43 1 4000-0")).await;
    let mut two = person("Ute", "Zwei", "0171 5555555");
    two.phone_numbers.push(pb::PhoneNumber {
        number: "030 1239999".into(),
        ..Default::default()
    });
    let two = create(&mut app, a, two).await;
    create(&mut app, "globex", person("Hans", "Müller", "030 1234567")).await;

    let number = |n: &str| pb::SearchContactsRequest {
        phone_number: n.into(),
        ..request(a)
    };
    let cases: [(&str, Vec<&pb::Contact>); 9] = [
        ("+4930", vec![&two, &berlin2, &berlin1]),
        ("+49 30", vec![&two, &berlin2, &berlin1]),
        ("+49301234567", vec![&berlin1]),
        ("030 1234567", vec![&berlin1]),
        ("+4930123", vec![&two, &berlin1]),
        ("+49", vec![&two, &hamburg, &berlin2, &berlin1]),
        ("+43", vec![&vienna]),
        ("+4917155", vec![&two]),
        ("+4989", vec![]),
    ];
    for (n, want) in cases {
        let got = search(&mut app, number(n)).await;
        let want: Vec<String> = want.iter().map(|c| c.contact_id.clone()).collect();
        assert_eq!(ids(&got), want, "{n}");
        assert!(got.scores.is_empty(), "{n}: no ranking without a query");
    }
    // A contact with two numbers of the prefix comes once.
    let mut both = person("Otto", "Doppel", "030 5550001");
    both.phone_numbers.push(pb::PhoneNumber {
        number: "030 5550002".into(),
        ..Default::default()
    });
    let both = create(&mut app, a, both).await;
    assert_eq!(
        ids(&search(&mut app, number("+4930555")).await),
        vec![both.contact_id]
    );
}

#[tokio::test]
async fn category_and_origin_narrow_a_query_a_number_or_the_whole_list() {
    let mut app = spawn_app().await;
    let a = "acme";
    let with = |last: &str, number: &str, cats: &[&str], origin: pb::Origin| {
        let mut c = person("Hans", last, number);
        c.categories = cats.iter().map(|s| s.to_string()).collect();
        c.origin = origin as i32;
        c
    };
    let caller_note = create(
        &mut app,
        a,
        with("Müller", "030 1111111", &["caller"], pb::Origin::CallNote),
    )
    .await;
    let customer = create(
        &mut app,
        a,
        with("Müller", "030 2222222", &["customer"], pb::Origin::Manual),
    )
    .await;
    let both = create(
        &mut app,
        a,
        with(
            "Mueller",
            "040 3333333",
            &["caller", "customer"],
            pb::Origin::ExpectedCall,
        ),
    )
    .await;
    let other = create(
        &mut app,
        a,
        with("Schmidt", "030 4444444", &["supplier"], pb::Origin::Manual),
    )
    .await;

    let set = |r: &pb::SearchContactsResponse| ids(r).into_iter().collect::<HashSet<_>>();
    let of = |cs: &[&pb::Contact]| {
        cs.iter()
            .map(|c| c.contact_id.clone())
            .collect::<HashSet<_>>()
    };
    let cases: Vec<(&str, pb::SearchContactsRequest, HashSet<String>)> = vec![
        (
            "query and category",
            pb::SearchContactsRequest {
                category: "customer".into(),
                ..query(a, "Müller")
            },
            of(&[&customer, &both]),
        ),
        (
            "query and origin",
            pb::SearchContactsRequest {
                origin: pb::Origin::CallNote as i32,
                ..query(a, "Müller")
            },
            of(&[&caller_note]),
        ),
        (
            "query, number and category",
            pb::SearchContactsRequest {
                phone_number: "+4930".into(),
                category: "customer".into(),
                ..query(a, "Müller")
            },
            of(&[&customer]),
        ),
        (
            "number and origin",
            pb::SearchContactsRequest {
                phone_number: "+4930".into(),
                origin: pb::Origin::Manual as i32,
                ..request(a)
            },
            of(&[&customer, &other]),
        ),
        (
            "category alone",
            pb::SearchContactsRequest {
                category: "caller".into(),
                ..request(a)
            },
            of(&[&caller_note, &both]),
        ),
        (
            "origin alone",
            pb::SearchContactsRequest {
                origin: pb::Origin::ExpectedCall as i32,
                ..request(a)
            },
            of(&[&both]),
        ),
        (
            "nothing",
            request(a),
            of(&[&caller_note, &customer, &both, &other]),
        ),
        (
            "a category nobody has",
            pb::SearchContactsRequest {
                category: "vip".into(),
                ..query(a, "Müller")
            },
            HashSet::new(),
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(set(&search(&mut app, req).await), want, "{name}");
    }
}

#[tokio::test]
async fn paging_newest_first_is_complete_and_stable_while_contacts_are_added() {
    let mut app = spawn_app().await;
    let a = "acme";
    let mut created = Vec::new();
    for i in 0..11 {
        let c = create(&mut app, a, person("Hans", &format!("Nummer{i}"), "")).await;
        created.push(c.contact_id);
    }
    let pages = all_pages(&mut app, request(a), 3, async |app, n| {
        create(app, a, person("Neu", &format!("Zwischen{n}"), "")).await;
    })
    .await;
    assert_eq!(pages.len(), 4);
    let seen: Vec<String> = pages.iter().flat_map(ids).collect();
    created.reverse();
    assert_eq!(seen, created, "every contact once, newest first");
}

#[tokio::test]
async fn paging_a_ranked_search_walks_the_first_pages_ranking_while_contacts_are_added() {
    let mut app = spawn_app().await;
    let a = "acme";
    let firsts = ["Hans", "Anna", "Peter", "Eva", "Jan", "Uta", "Karl"];
    let lasts = ["Müller", "Mueller", "Muller", "Möller", "Müllner", "Miller"];
    for (i, last) in lasts.iter().cycle().take(30).enumerate() {
        create(&mut app, a, person(firsts[i % firsts.len()], last, "")).await;
    }
    let q = query(a, "Hans Müller");
    let whole = search(
        &mut app,
        pb::SearchContactsRequest {
            page_size: 500,
            ..q.clone()
        },
    )
    .await;
    assert!(whole.contacts.len() > 10, "{}", whole.contacts.len());
    // New contacts that would rank first, and change how common the words are, between pages.
    let pages = all_pages(&mut app, q.clone(), 4, async |app, n| {
        create(app, a, person("Hans", "Müller", "")).await;
        create(app, a, person(&format!("Hanna{n}"), "Müller", "")).await;
    })
    .await;
    assert!(pages.len() > 2);
    let seen: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(seen, ids(&whole), "the pages are the first page's ranking");
    let scores: Vec<f64> = pages.iter().flat_map(|p| p.scores.clone()).collect();
    assert_eq!(scores, whole.scores);
    // A new search sees the new contacts.
    let again = search(&mut app, q).await;
    assert!(again.contacts.len() > whole.contacts.len());
}

#[tokio::test]
async fn another_accounts_contacts_never_appear() {
    let mut app = spawn_app().await;
    let mine = create(&mut app, "acme", person("Hans", "Müller", "030 1234567")).await;
    let mut theirs = HashSet::new();
    for account in ["globex", "acme2", "acm"] {
        let c = create(&mut app, account, person("Hans", "Müller", "030 1234567")).await;
        theirs.insert(c.contact_id);
    }
    let reqs = [
        request("acme"),
        query("acme", "Hans Müller"),
        query("acme", "Müller"),
        pb::SearchContactsRequest {
            phone_number: "+4930".into(),
            ..request("acme")
        },
        pb::SearchContactsRequest {
            phone_number: "030 1234567".into(),
            ..query("acme", "Müller")
        },
    ];
    for req in reqs {
        let got = search(&mut app, req.clone()).await;
        assert_eq!(ids(&got), vec![mine.contact_id.clone()], "{req:?}");
    }
    assert!(
        search(&mut app, request("nobody"))
            .await
            .contacts
            .is_empty()
    );
}

#[tokio::test]
async fn a_ranked_search_goes_at_most_500_deep_and_pages_are_at_most_500() {
    let mut app = spawn_app().await;
    let a = "acme";
    // Seeded in SQL: 520 through the API would take most of the test's time.
    let db = app.sql().await;
    db.batch_execute(
        "INSERT INTO contacts (account_id, contact_id, categories, first_name, last_name, \
           origin, create_time, update_time, last_activity_time, search_text) \
         SELECT 'acme', gen_random_uuid(), '{caller}', 'Hans', 'Müller', 3, now(), now(), \
           now(), 'hans mueller' FROM generate_series(1, 520)",
    )
    .await
    .unwrap();
    let q = query(a, "Hans Müller");
    let first = search(
        &mut app,
        pb::SearchContactsRequest {
            page_size: 100_000,
            ..q.clone()
        },
    )
    .await;
    assert_eq!(first.contacts.len(), 500);
    assert!(first.next_page_token.is_empty(), "500 deep, no more");
    let pages = all_pages(&mut app, q, 150, async |_, _| {}).await;
    let seen: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(seen.len(), 500);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 500);
    // Unranked, every contact: 520 in two pages of at most 500.
    let pages = all_pages(&mut app, request(a), 0, async |_, _| {}).await;
    assert_eq!(pages.iter().map(|p| p.contacts.len()).sum::<usize>(), 520);
    assert!(pages.iter().all(|p| p.contacts.len() <= 50), "0 means 50");
    let big = search(
        &mut app,
        pb::SearchContactsRequest {
            page_size: 501,
            ..request(a)
        },
    )
    .await;
    assert_eq!(big.contacts.len(), 500);
    assert!(!big.next_page_token.is_empty());
}

#[tokio::test]
async fn searching_is_not_activity() {
    let mut app = spawn_app().await;
    let c = create(&mut app, "acme", person("Hans", "Müller", "030 1234567")).await;
    app.advance_days(3);
    let got = search(&mut app, query("acme", "Müller")).await;
    assert_eq!(got.contacts, vec![c]);
}
