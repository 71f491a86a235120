use super::*;
use crate::contact::{Categories, ContactFields, Origin, PhoneEntry, PhoneType};
use crate::phone::E164;
use chrono::{Duration, TimeZone, Utc};
use uuid::Uuid;

/// A stored contact: "Frau|Dr.|Petra|Karge|Karge KG" (salutation, title, first, last,
/// company), with numbers in E.164, last active `days_ago`.
fn contact(spec: &str, numbers: &[&str], days_ago: i64) -> Contact {
    let p: Vec<&str> = spec.split('|').collect();
    assert_eq!(p.len(), 5, "{spec}");
    let t = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap() - Duration::days(days_ago);
    Contact {
        account_id: "acc".into(),
        contact_id: Uuid::now_v7(),
        fields: ContactFields {
            categories: Categories::caller(),
            salutation: p[0].into(),
            title: p[1].into(),
            first_name: p[2].into(),
            last_name: p[3].into(),
            company: p[4].into(),
            phone_numbers: numbers
                .iter()
                .map(|n| PhoneEntry {
                    number: (*n).into(),
                    e164: E164::from_trusted((*n).into()),
                    kind: PhoneType::from_code(3).unwrap(),
                })
                .collect(),
            ..ContactFields::default()
        },
        caller_message: None,
        origin: Origin::CallNote,
        create_time: t,
        update_time: t,
        last_activity_time: t,
        version: 1,
    }
}

fn people(specs: &[&str]) -> Vec<Contact> {
    specs.iter().map(|s| contact(s, &[], 10)).collect()
}

fn lookup(number: Option<&str>, name: &str, candidates: Vec<Contact>) -> Ranking {
    let name = CallerName::parse(name);
    let counts = WordCounts::new();
    let caller = Caller {
        number,
        name: &name,
        counts: &counts,
    };
    rank(&caller, candidates, 20)
}

/// The contact's spec as [`contact`] takes it.
fn spec(c: &Contact) -> String {
    let f = &c.fields;
    [
        &f.salutation,
        &f.title,
        &f.first_name,
        &f.last_name,
        &f.company,
    ]
    .map(|s| s.as_str())
    .join("|")
}

fn order(r: &Ranking) -> Vec<String> {
    r.matches.iter().map(|m| spec(&m.contact)).collect()
}

#[test]
fn the_contact_an_agent_expects_comes_first() {
    // (caller's name, candidates, the expected first match)
    let cases: &[(&str, &[&str], &str)] = &[
        // The right first name with a near surname beats the wrong first name.
        (
            "Lukas Wulf",
            &["||Anto|Wulf|", "||Lukas|Wulff|"],
            "||Lukas|Wulff|",
        ),
        // A hyphenated first name stays a first name.
        (
            "Heinz-Werner Kensi",
            &[
                "||Peter|Werner|",
                "||Werner|Kensi|",
                "||Heinz-Werner|Kensi|",
            ],
            "||Heinz-Werner|Kensi|",
        ),
        (
            "Hans Jörg Weber",
            &["||Jörg|Weber|", "||Hans Jörg|Weber|"],
            "||Hans Jörg|Weber|",
        ),
        // Two swapped letters.
        (
            "Marika Herramnn",
            &["||Marika|Hermes|", "||Marika|Herrmann|"],
            "||Marika|Herrmann|",
        ),
        // Cue words say company or person.
        (
            "Firma Henk",
            &["||Henk|Jansen|", "||Anna|Henk|", "||||Henk GmbH"],
            "||||Henk GmbH",
        ),
        ("Fa. Henk", &["||Anna|Henk|", "||||Henk KG"], "||||Henk KG"),
        (
            "Frau Dr. Karge",
            &[
                "||||Karge KG",
                "Frau||Petra|Karge|",
                "Herr|Dr.|Ulf|Karge|",
                "Frau|Dr.|Eva|Karge|",
            ],
            "Frau|Dr.|Eva|Karge|",
        ),
        (
            "Herr Karge",
            &["||||Karge KG", "Frau||Petra|Karge|", "Herr||Ulf|Karge|"],
            "Herr||Ulf|Karge|",
        ),
        // Every word of a company counts.
        (
            "Henk Logistik",
            &[
                "||||Henk GmbH",
                "||||Logistik Meyer GmbH",
                "||||Henk Logistik Service GmbH",
            ],
            "||||Henk Logistik Service GmbH",
        ),
        // Order, case, spelling variants.
        (
            "Müller, Hans",
            &["||Anna|Müller|", "||Hans|Müller|"],
            "||Hans|Müller|",
        ),
        (
            "hans mueller",
            &["||Hans|Möller|", "||Hans|Müller|"],
            "||Hans|Müller|",
        ),
        (
            "Hans Muller",
            &["||Hans|Möller|", "||Hans|Müller|"],
            "||Hans|Müller|",
        ),
        (
            "Meyer",
            &["||Hans|Bauer|", "||Hans|Meier|"],
            "||Hans|Meier|",
        ),
        (
            "Schmitt",
            &["||Eva|Schmied|", "||Eva|Schmidt|"],
            "||Eva|Schmidt|",
        ),
        (
            "Müller",
            &["||Hans|Möller|", "||Hans|Müller|"],
            "||Hans|Müller|",
        ),
        // An initial for the first name.
        (
            "H. Müller",
            &["||Anna|Müller|", "||Hans|Müller|"],
            "||Hans|Müller|",
        ),
        // "e.K." is a legal form, not two initials.
        (
            "Schmidt e.K.",
            &["||Eva|Schmidt|", "||||Schmidt e.K."],
            "||||Schmidt e.K.",
        ),
        // A foreign name with a typo.
        (
            "Katarzyna Kowalcyk",
            &["||Katarzyna|Nowak|", "||Katarzyna|Kowalczyk|"],
            "||Katarzyna|Kowalczyk|",
        ),
    ];
    for (name, candidates, expected) in cases {
        let r = lookup(None, name, people(candidates));
        assert_eq!(
            r.matches.first().map(|m| spec(&m.contact)).as_deref(),
            Some(*expected),
            "{name}: {:?}",
            order(&r)
        );
    }
}

#[test]
fn confidence_says_how_sure_a_match_is() {
    use Confidence::*;
    // (caller's name, candidates, the first match's confidence, ambiguous)
    let cases: &[(&str, &[&str], Option<Confidence>, bool)] = &[
        ("Hans Müller", &["||Hans|Müller|"], Some(Certain), false),
        (
            "Müller, Hans",
            &["||Hans|Müller|", "||Anna|Müller|"],
            Some(Certain),
            false,
        ),
        ("Firma Henk", &["||||Henk GmbH"], Some(Certain), false),
        // Namesakes: sure of the name, not of the contact.
        (
            "Hans Müller",
            &["||Hans|Müller|", "||Hans|Müller|"],
            Some(Likely),
            true,
        ),
        (
            "Frau Karge",
            &["Frau||Petra|Karge|", "Frau||Eva|Karge|"],
            Some(Likely),
            true,
        ),
        // A contact saved by surname only may be the same Karge as the one with a first name.
        (
            "Frau Karge",
            &["Frau|||Karge|", "Frau||Petra|Karge|"],
            Some(Likely),
            true,
        ),
        (
            "Petra Karge",
            &["Frau||Petra|Karge|", "Frau||Petra|Krage|"],
            Some(Certain),
            false,
        ),
        // The stored salutation tells them apart.
        (
            "Frau Karge",
            &["Frau||Petra|Karge|", "Herr||Ulf|Karge|"],
            Some(Likely),
            false,
        ),
        // A surname alone, a typo: likely.
        ("Karge", &["Frau||Petra|Karge|"], Some(Likely), false),
        ("Hans Müler", &["||Hans|Müller|"], Some(Likely), false),
        // Something does not fit: possible at most.
        ("Lukas Wulf", &["||Anto|Wulf|"], Some(Possible), false),
        ("Jordan Young", &["||Eugen|Junk|"], Some(Possible), false),
        (
            "Emily Brown",
            &["||Emily|Hänel|", "||Erik|Braun|"],
            None,
            false,
        ),
        ("Frau Karge", &["||||Karge KG"], Some(Possible), false),
        // Two slips, a first name with a company word, a company without its telling word:
        // probably somebody else.
        ("Herr Harrison", &["Herr||Robert|Harris|"], None, false),
        (
            "Hans Eichhof",
            &["Herr||Hans|Rodenwieser|Reichhof Spedition KG"],
            Some(Possible),
            false,
        ),
        (
            "Firma Elbe Sanitär",
            &["Frau|Dr.|Elke|Seegruber|Spree Sanitär GmbH"],
            Some(Possible),
            false,
        ),
        (
            "Firma Hoffmann Sanitär",
            &["||Martin|Hofmann|Lindhorst Sanitär"],
            Some(Possible),
            false,
        ),
        // One slip in the company's own name: likely.
        (
            "Firma Kuhlfeld Autohaus",
            &["||||Kohlfeld Autohaus OHG"],
            Some(Likely),
            false,
        ),
        // A first name alone is a weak match; a shared first name with another surname none.
        ("Hans", &["||Hans|Müller|"], Some(Possible), false),
        ("Hans Schmidt", &["||Hans|Müller|"], None, false),
    ];
    for (name, candidates, confidence, ambiguous) in cases {
        let r = lookup(None, name, people(candidates));
        assert_eq!(
            r.matches.first().map(|m| m.confidence),
            *confidence,
            "{name}: {r:?}"
        );
        assert_eq!(r.ambiguous, *ambiguous, "{name}: {r:?}");
    }
}

#[test]
fn a_number_is_certain_unless_shared_or_contradicted() {
    let number = "+4930123456";
    let one = || contact("||Hans|Müller|", &[number], 10);
    let r = lookup(Some(number), "", vec![one()]);
    assert_eq!(r.matches[0].matched_by, MatchKind::PhoneNumber);
    assert_eq!(r.matches[0].confidence, Confidence::Certain);
    assert!(!r.ambiguous);

    let r = lookup(Some(number), "Hans Müller", vec![one()]);
    assert_eq!(r.matches[0].matched_by, MatchKind::PhoneNumberAndName);
    assert_eq!(r.matches[0].confidence, Confidence::Certain);

    // A typo in the name does not contradict the number.
    let r = lookup(Some(number), "Hans Mueler", vec![one()]);
    assert_eq!(r.matches[0].confidence, Confidence::Certain);

    // Another name on the number: a family line, or a colleague.
    let r = lookup(Some(number), "Eva Schulz", vec![one()]);
    assert_eq!(r.matches[0].matched_by, MatchKind::PhoneNumber);
    assert_eq!(r.matches[0].confidence, Confidence::Likely);

    // A shared number without a name cannot tell who calls.
    let two = vec![one(), contact("||Anna|Müller|", &[number], 5)];
    let r = lookup(Some(number), "", two.clone());
    assert!(
        r.matches.iter().all(|m| m.confidence == Confidence::Likely),
        "{r:?}"
    );
    assert!(r.ambiguous);
    // The name can.
    let r = lookup(Some(number), "Anna Müller", two);
    assert_eq!(spec(&r.matches[0].contact), "||Anna|Müller|");
    assert_eq!(r.matches[0].confidence, Confidence::Certain);
    assert_eq!(r.matches[1].confidence, Confidence::Likely);
    assert!(!r.ambiguous);

    // The number decides over a namesake elsewhere, which is then not certain.
    let r = lookup(
        Some(number),
        "Hans Müller",
        vec![contact("||Hans|Müller|", &["+4940999"], 1), one()],
    );
    assert_eq!(r.matches[0].matched_by, MatchKind::PhoneNumberAndName);
    assert_eq!(r.matches[0].confidence, Confidence::Certain);
    assert_eq!(r.matches[1].matched_by, MatchKind::Name);
    assert_eq!(r.matches[1].confidence, Confidence::Likely);
}

#[test]
fn bands_never_overlap_and_ties_go_to_the_most_recently_active() {
    let number = "+4930123456";
    let candidates = vec![
        contact("||Hans|Müller|", &[], 1),
        contact("||Eva|Schulz|", &[number], 30),
        contact("||Hans|Müller|", &[number], 20),
        contact("||Eva|Schulz|", &[number], 10),
    ];
    let ids: Vec<Uuid> = candidates.iter().map(|c| c.contact_id).collect();
    let r = lookup(Some(number), "Hans Müller", candidates);
    let got: Vec<(Uuid, MatchKind)> = r
        .matches
        .iter()
        .map(|m| (m.contact.contact_id, m.matched_by))
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[2], MatchKind::PhoneNumberAndName),
            (ids[3], MatchKind::PhoneNumber),
            (ids[1], MatchKind::PhoneNumber),
            (ids[0], MatchKind::Name),
        ]
    );
    for m in &r.matches {
        let (low, high) = m.matched_by.band();
        assert!((low..=high).contains(&m.score), "{m:?}");
    }
    assert!(r.matches[0].score >= 0.92);
    assert!(r.matches[1].score < 0.76 && r.matches[1].score >= 0.7);
    assert!(r.matches[3].score <= 0.65);
}

#[test]
fn within_a_band_surer_matches_score_higher() {
    let r = lookup(
        None,
        "Lukas Wulf",
        people(&["||Anto|Wulf|", "||Lukas|Wulff|", "||Lukas|Wulf|"]),
    );
    let scores: Vec<(Confidence, f64)> =
        r.matches.iter().map(|m| (m.confidence, m.score)).collect();
    for pair in scores.windows(2) {
        assert!(
            pair[0].0 >= pair[1].0 && pair[0].1 > pair[1].1,
            "{scores:?}"
        );
    }
}

#[test]
fn evidence_names_the_words_fields_and_how_they_matched() {
    let r = lookup(
        Some("+4930123456"),
        "Frau Mayer-Jung",
        vec![contact("Frau||Eva|Meier-Junck|", &["+4930123456"], 1)],
    );
    let got: Vec<(Field, How, &str, &str)> = r.matches[0]
        .evidence
        .iter()
        .map(|e| {
            (
                e.field,
                e.how,
                e.caller_text.as_str(),
                e.contact_text.as_str(),
            )
        })
        .collect();
    assert!(
        got.contains(&(
            Field::PhoneNumber,
            How::ExactNumber,
            "+4930123456",
            "+4930123456"
        )),
        "{got:?}"
    );
    assert!(
        got.contains(&(Field::LastName, How::SpellingVariant, "Mayer", "Meier")),
        "{got:?}"
    );
    assert!(
        got.contains(&(Field::LastName, How::SoundsAlike, "Jung", "Junck")),
        "{got:?}"
    );
    assert!(
        got.contains(&(Field::Salutation, How::Same, "", "Frau")),
        "{got:?}"
    );
}

#[test]
fn word_comparison_table() {
    let how = |a: &str, b: &str| compare(&Token::new(a), &Token::new(b)).map(|l| l.how);
    use How::*;
    let cases: &[(&str, &str, Option<How>)] = &[
        ("mueller", "mueller", Some(Same)),
        ("muller", "mueller", Some(SpellingVariant)),
        ("meyer", "meier", Some(SpellingVariant)),
        ("maier", "mayer", Some(SpellingVariant)),
        ("schmitt", "schmidt", Some(SpellingVariant)),
        ("schmid", "schmidt", Some(SpellingVariant)),
        ("hoffmann", "hofmann", Some(SpellingVariant)),
        ("fisher", "fischer", Some(SpellingVariant)),
        ("carl", "karl", Some(SpellingVariant)),
        ("philipp", "filip", Some(SpellingVariant)),
        ("herramnn", "herrmann", Some(Typo)),
        ("schmitd", "schmidt", Some(SpellingVariant)),
        ("scholz", "schulz", Some(Typo)),
        ("kowalcyk", "kowalczyk", Some(Typo)),
        ("young", "junk", Some(SoundsAlike)),
        ("hans", "anna", None),
        ("schmidt", "schneider", None),
        ("ott", "ada", None),
        ("stein", "steinmann", None),
        ("max", "mia", None),
        ("bau", "bauer", None),
        ("mzller", "mueller", Some(Typo)),
    ];
    for (a, b, expected) in cases {
        assert_eq!(how(a, b), *expected, "{a} vs {b}");
        assert_eq!(how(b, a), *expected, "symmetric: {b} vs {a}");
    }
}

#[test]
fn the_callers_words_and_cues_are_read_apart() {
    let n = CallerName::parse("Frau Prof. Dr. med. Anna-Lena von Berg");
    assert_eq!(n.search_words(), ["anna", "lena", "von", "berg"]);
    assert_eq!(n.gender, Some(Gender::Female));
    assert_eq!(n.titles, ["prof", "dr"]);
    assert!(!n.company_cue);
    assert_eq!(n.words[0].group, n.words[1].group);
    assert_ne!(n.words[1].group, n.words[2].group);

    let n = CallerName::parse("Fa. Müller & Co. KG");
    assert_eq!(n.search_words(), ["mueller"]);
    assert!(n.company_cue);

    let n = CallerName::parse("H. Müller");
    assert_eq!(n.search_words(), ["mueller"]);
    assert!(n.words[0].initial);

    for empty in ["", "Herr", "Frau Dr.", "Firma", " - "] {
        assert!(CallerName::parse(empty).is_empty(), "{empty:?}");
    }
    let n =
        CallerName::parse("a b c d e f g h i j k l m n o p q r s t u v w x y z aa bb cc dd ee ff");
    assert!(n.search_words().len() <= MAX_QUERY_WORDS);
}
