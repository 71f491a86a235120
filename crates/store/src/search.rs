//! `SearchContacts`: an account's contacts by name or company (the candidates of incoming calls,
//! ranked by `callers_domain::search`), or newest first; either narrowed by a number prefix,
//! a category and an origin; in keyset pages.

use crate::contacts::{contact_from_row, select_contact};
use crate::exec::{Conn, Route};
use crate::identify::{NameQuery, SET_NAME_SEARCH, WORDS_PER_QUERY_WORD, by_name};
use crate::row::row_struct;
use crate::{Error, Store, keyset_page};
use callers_domain::AccountId;
use callers_domain::contact::Contact;
use callers_domain::identification::{Caller, CallerMatch, WordCounts};
use callers_domain::names;
use callers_domain::search::{self, RankedPosition, Search};
use std::collections::BTreeSet;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Where the next page of a search starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SearchAfter {
    /// After this contact, newest first.
    Newest(Uuid),
    /// After this place of the ranking of the contacts up to `until`, the newest contact of
    /// the account when the first page was read.
    Ranked {
        until: Uuid,
        position: RankedPosition,
    },
}

/// One page of a search.
#[derive(Debug)]
pub enum SearchPage {
    /// Without a query: newest first.
    Newest {
        contacts: Vec<Contact>,
        next_after: Option<Uuid>,
    },
    /// With a query: best first.
    Ranked {
        matches: Vec<CallerMatch>,
        next_after: Option<SearchAfter>,
    },
}

/// The filters as parameters: `category`, `origin`, and the number range `[from, to)`.
struct Filters<'a> {
    category: Option<&'a str>,
    origin: Option<i16>,
    from: Option<&'a str>,
    to: Option<String>,
}

impl<'a> Filters<'a> {
    fn of(s: &'a Search) -> Filters<'a> {
        Filters {
            category: s.category.as_deref(),
            origin: s.origin.map(|o| o.code() as i16),
            from: s.number.as_ref().map(|n| n.as_str()),
            to: s.number.as_ref().map(|n| n.upper_bound()),
        }
    }
}

/// The filters on a contact `$c` (an alias of `contacts`): `$cat` a category it has, `$origin`
/// its origin, `[$from, $to)` the range of a number of its (numbers compared in byte order,
/// the order of `contact_phone_numbers_e164_prefix_idx`, migration V12). NULL filters nothing.
macro_rules! filters {
    ($c:literal, $cat:literal, $origin:literal, $from:literal, $to:literal) => {
        concat!(
            "(",
            $cat,
            "::text IS NULL OR ",
            $cat,
            " = ANY(",
            $c,
            ".categories)) \
             AND (",
            $origin,
            "::smallint IS NULL OR ",
            $c,
            ".origin = ",
            $origin,
            ") \
             AND (",
            $from,
            "::text IS NULL OR EXISTS (SELECT 1 FROM contact_phone_numbers p \
               WHERE p.account_id = ",
            $c,
            ".account_id AND p.contact_id = ",
            $c,
            ".contact_id \
               AND p.e164 COLLATE \"C\" >= ",
            $from,
            " AND p.e164 COLLATE \"C\" < ",
            $to,
            "))"
        )
    };
}

/// Without a number: `$1` account, `$2` the last contact of the previous page, `$3` category,
/// `$4` origin, `$5` rows. The primary key read backwards. (A number filter that is NULL
/// would still shape the generic plan: a hashed subplan over every number.)
const NEWEST: &str = concat!(
    select_contact!(),
    "WHERE c.account_id = $1 AND ($2::uuid IS NULL OR c.contact_id < $2) AND ",
    filters!("c", "$3", "$4", "NULL", "NULL"),
    " ORDER BY c.contact_id DESC LIMIT $5"
);

/// As [`NEWEST`] with a number range `[$6, $7)`, which leads: the contacts with such a number
/// from `contact_phone_numbers_e164_prefix_idx`, whatever else the account holds.
const NEWEST_BY_NUMBER: &str = concat!(
    select_contact!(),
    // The number's contacts first, as one array: a semi-join would let the planner walk the
    // whole account newest first hoping to meet them early (it cannot estimate the range).
    "WHERE c.account_id = $1 AND c.contact_id = ANY(ARRAY(SELECT p.contact_id \
       FROM contact_phone_numbers p WHERE p.account_id = $1 \
       AND p.e164 COLLATE \"C\" >= $6 AND p.e164 COLLATE \"C\" < $7)) \
     AND ($2::uuid IS NULL OR c.contact_id < $2) AND ",
    filters!("c", "$3", "$4", "NULL", "NULL"),
    " ORDER BY c.contact_id DESC LIMIT $5"
);

/// The name candidates of incoming calls (`identify::by_name!`: `$1` to `$5`), of the contacts
/// up to `$6` that pass the filters (`$7` category, `$8` origin, `[$9, $10)` a number): a
/// contact filtered out takes no candidate place. Without filters the contacts are not read
/// before they have a place.
const BY_NAME: &str = by_name!(concat!(
    "AND x.contact_id <= $6 \
     AND (($7::text IS NULL AND $8::smallint IS NULL AND $9::text IS NULL) \
          OR EXISTS (SELECT 1 FROM contacts f WHERE f.account_id = $1 \
                     AND f.contact_id = x.contact_id AND ",
    filters!("f", "$7", "$8", "$9", "$10"),
    "))"
));

/// The newest contact of `$1`: where a ranked search's pages end.
const NEWEST_ID: &str = "SELECT (SELECT contact_id FROM contacts WHERE account_id = $1 \
                                  ORDER BY contact_id DESC LIMIT 1) AS contact_id";

/// How many of the contacts up to `$3` carry each of the words `$2` (up to 200), as the
/// incoming call's `WORD_COUNTS` counts them in the whole account: contacts added after the
/// first page change no score of a later one.
const WORD_COUNTS: &str = "SELECT u.word, \
       (SELECT count(*) FROM (SELECT 1 FROM contact_words x \
                              WHERE x.account_id = $1 AND x.word = u.word \
                              AND x.contact_id <= $3 LIMIT 200) t) AS contacts \
     FROM unnest($2::text[]) AS u(word)";

row_struct! {
    struct WordCountRow {
        word: String,
        contacts: i64,
    }
}

row_struct! {
    struct NewestIdRow {
        contact_id: Option<Uuid>,
    }
}

impl Store {
    /// One page of `search` in `account`, `size` contacts after `after`: ranked by its query
    /// (at most [`search::MAX_DEPTH`] deep, in the contacts that existed at the first page),
    /// else newest first. Read only; nothing moves `last_activity_time`.
    pub async fn search_contacts(
        &self,
        account: &AccountId,
        search: &Search,
        after: Option<SearchAfter>,
        size: usize,
    ) -> Result<SearchPage, Error> {
        let filters = Filters::of(search);
        match &search.query {
            None => {
                let after = match after {
                    Some(SearchAfter::Newest(id)) => Some(id),
                    _ => None,
                };
                self.newest(account.as_str(), &filters, after, size).await
            }
            Some(query) => {
                let position = match after {
                    Some(SearchAfter::Ranked { until, position }) => Some((until, position)),
                    _ => None,
                };
                self.ranked(account.as_str(), query, &filters, position, size)
                    .await
            }
        }
    }

    async fn newest(
        &self,
        account: &str,
        f: &Filters<'_>,
        after: Option<Uuid>,
        size: usize,
    ) -> Result<SearchPage, Error> {
        let fetch = (size + 1) as i64;
        let rows = self
            .read(Route::Pooled, async |s| {
                let params: [&(dyn ToSql + Sync); 7] = [
                    &account,
                    &after,
                    &f.category,
                    &f.origin,
                    &fetch,
                    &f.from,
                    &f.to,
                ];
                match f.from {
                    Some(_) => s.conn().query(NEWEST_BY_NUMBER, &params).await,
                    None => s.conn().query(NEWEST, &params[..5]).await,
                }
            })
            .await?;
        let contacts = rows
            .iter()
            .map(contact_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let (contacts, next_after) = keyset_page(contacts, size, |c| c.contact_id);
        Ok(SearchPage::Newest {
            contacts,
            next_after,
        })
    }

    async fn ranked(
        &self,
        account: &str,
        query: &str,
        f: &Filters<'_>,
        after: Option<(Uuid, RankedPosition)>,
        size: usize,
    ) -> Result<SearchPage, Error> {
        let name = NameQuery::new(query);
        let empty = SearchPage::Ranked {
            matches: Vec::new(),
            next_after: None,
        };
        if name.is_empty() {
            return Ok(empty);
        }
        let found = self
            .read(Route::Pooled, async |s| {
                let tx = s.read_only().await?;
                let until = match after {
                    Some((until, _)) => Some(until),
                    None => tx
                        .conn()
                        .row::<NewestIdRow>(NEWEST_ID, &[&account])
                        .await?
                        .and_then(|r| r.contact_id),
                };
                let Some(until) = until else {
                    return Ok(None);
                };
                let contacts = candidates(tx.conn(), account, &name, f, until).await?;
                let counts = word_counts(tx.conn(), account, &name, &contacts, until).await?;
                tx.commit().await?;
                Ok(Some((until, contacts, counts)))
            })
            .await?;
        let Some((until, contacts, counts)) = found else {
            return Ok(empty);
        };
        let caller = Caller {
            number: None,
            name: &name.name,
            counts: &counts,
        };
        let (matches, next) = search::ranked_page(&caller, contacts, after.map(|a| a.1), size);
        Ok(SearchPage::Ranked {
            matches,
            next_after: next.map(|position| SearchAfter::Ranked { until, position }),
        })
    }
}

async fn candidates(
    db: Conn<'_>,
    account: &str,
    name: &NameQuery,
    f: &Filters<'_>,
    until: Uuid,
) -> Result<Vec<Contact>, Error> {
    db.batch_execute(SET_NAME_SEARCH).await?;
    let depth = search::MAX_DEPTH as i64;
    let rows = db
        .query(
            BY_NAME,
            &[
                &account,
                &name.words,
                &name.codes,
                &depth,
                &WORDS_PER_QUERY_WORD,
                &until,
                &f.category,
                &f.origin,
                &f.from,
                &f.to,
            ],
        )
        .await?;
    rows.iter().map(contact_from_row).collect()
}

/// How many contacts up to `until` carry the query's words and the candidates'.
async fn word_counts(
    db: Conn<'_>,
    account: &str,
    name: &NameQuery,
    contacts: &[Contact],
    until: Uuid,
) -> Result<WordCounts, Error> {
    let mut counts = WordCounts::new();
    if contacts.is_empty() {
        return Ok(counts);
    }
    let mut words: BTreeSet<String> = name.words.iter().cloned().collect();
    for c in contacts {
        words.extend(names::search_tokens(&c.fields.search_text()));
    }
    let words: Vec<String> = words.into_iter().collect();
    for r in db
        .rows::<WordCountRow>(WORD_COUNTS, &[&account, &words, &until])
        .await?
    {
        counts.insert(r.word, r.contacts);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{explain, fresh_store};

    /// Every statement of a search reads indexes in an account of 100,000 contacts, with the
    /// plan made for its values and with the generic one: the newest by the primary key read
    /// backwards, a number prefix as a range of `contact_phone_numbers_e164_prefix_idx`, names
    /// as an incoming call's are found, filtered or not.
    #[tokio::test]
    async fn every_search_statement_uses_indexes_in_an_account_of_100k_contacts() {
        let (store, _db) = fresh_store().await;
        let client = store.client().await.unwrap();
        client
            .batch_execute("SET statement_timeout = 0")
            .await
            .unwrap();
        client
            .batch_execute(
                "INSERT INTO contacts (account_id, contact_id, categories, first_name, \
                   last_name, origin, create_time, update_time, last_activity_time, \
                   search_text) \
                 SELECT CASE WHEN g <= 100000 THEN 'big' ELSE 'other' END, gen_random_uuid(), \
                   CASE WHEN g % 10 = 0 THEN '{customer}'::text[] ELSE '{caller}' END, \
                   f, l, 1 + g % 3, now(), now(), now(), f || ' ' || l \
                 FROM (SELECT g, \
                   translate(substr(md5(g::text), 1, 6), '0123456789', 'ghijklmnop') AS f, \
                   translate(substr(md5((-g)::text), 1, 9), '0123456789', 'ghijklmnop') AS l \
                   FROM generate_series(1, 120000) g) s; \
                 INSERT INTO contact_phone_numbers \
                   (account_id, contact_id, position, number, e164, phone_type, dial_base) \
                 SELECT account_id, contact_id, 0, 'n', \
                   '+4930' || (2000000 + row_number() OVER ())::text, 1, '' FROM contacts",
            )
            .await
            .unwrap();
        // As autovacuum would: statistics, and GIN's pending list merged into the index.
        for table in [
            "contacts",
            "contact_phone_numbers",
            "contact_words",
            "account_words",
        ] {
            client
                .batch_execute(&format!("VACUUM ANALYZE {table}"))
                .await
                .unwrap();
        }
        let until = "'ffffffff-ffff-ffff-ffff-ffffffffffff'";
        let after = "'80000000-0000-0000-0000-000000000000'";
        let none = "NULL, NULL, NULL, NULL";
        let name = "'big', ARRAY['hans','mueller'], ARRAY['068','657'], 500, 6";
        let cases: Vec<(&str, &str, String, &[&str])> = vec![
            (
                "newest",
                NEWEST,
                "'big', NULL, NULL, NULL, 51".into(),
                &["contacts_pkey"],
            ),
            (
                "newest of a category and origin, after a contact",
                NEWEST,
                format!("'big', {after}, 'customer', 2, 51"),
                &["contacts_pkey"],
            ),
            (
                "a whole number",
                NEWEST_BY_NUMBER,
                "'big', NULL, NULL, NULL, 51, '+49302000001', '+49302000002'".into(),
                &["contact_phone_numbers_e164_prefix_idx", "contacts_pkey"],
            ),
            (
                "a number prefix, filtered",
                NEWEST_BY_NUMBER,
                format!("'big', {after}, 'caller', 1, 51, '+4930200001', '+4930200002'"),
                &["contact_phone_numbers_e164_prefix_idx", "contacts_pkey"],
            ),
            (
                "a name",
                BY_NAME,
                format!("{name}, {until}, {none}"),
                &[
                    "account_words_trgm_idx",
                    "account_words_phonetic_idx",
                    "account_words_shape_idx",
                    "contact_words_pkey",
                ],
            ),
            (
                "a name, filtered",
                BY_NAME,
                format!("{name}, {until}, 'caller', 1, '+4930', '+4931'"),
                &[
                    "account_words_trgm_idx",
                    "contact_words_pkey",
                    "contacts_pkey",
                    "contact_phone_numbers_pkey",
                ],
            ),
            (
                "the newest id",
                NEWEST_ID,
                "'big'".into(),
                &["contacts_pkey"],
            ),
            (
                "word counts",
                WORD_COUNTS,
                format!("'big', ARRAY['hans','mueller'], {until}"),
                &["contact_words_pkey"],
            ),
        ];
        for (path, sql, args, indexes) in &cases {
            let setup = if *sql == BY_NAME { SET_NAME_SEARCH } else { "" };
            for mode in ["force_custom_plan", "force_generic_plan"] {
                let nodes = explain(&client, mode, setup, sql, args).await;
                for (node, relation, _, _) in &nodes {
                    assert!(
                        !(node == "Seq Scan"
                            && [
                                "contacts",
                                "contact_phone_numbers",
                                "contact_words",
                                "account_words"
                            ]
                            .contains(&relation.as_str())),
                        "{path} ({mode}) scans {relation}: {nodes:?}"
                    );
                }
                for index in *indexes {
                    assert!(
                        nodes.iter().any(|(_, _, i, _)| i == index),
                        "{path} ({mode}) does not use {index}: {nodes:?}"
                    );
                }
            }
        }

        // The same through the store, past the plan cache's five custom plans.
        let row = client
            .query_one(
                "SELECT contact_id, first_name || ' ' || last_name AS name FROM contacts \
                 WHERE account_id = 'big' ORDER BY contact_id LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        let (id, name): (Uuid, String) = (row.get("contact_id"), row.get("name"));
        let big = AccountId::parse("big").unwrap();
        let de = callers_domain::phone::Region::germany();
        let ranked = Search {
            query: Some(name.clone()),
            ..Search::default()
        };
        let prefix = Search {
            number: Some(search::NumberPrefix::parse("+493020001", &de).unwrap()),
            ..Search::default()
        };
        for _ in 0..7 {
            let started = std::time::Instant::now();
            let page = store
                .search_contacts(&big, &ranked, None, 50)
                .await
                .unwrap();
            eprintln!(
                "ranked search in 100k contacts took {:?}",
                started.elapsed()
            );
            let SearchPage::Ranked { matches, .. } = page else {
                panic!("not ranked")
            };
            assert_eq!(matches[0].contact.contact_id, id, "{name}");
            let started = std::time::Instant::now();
            let page = store
                .search_contacts(&big, &prefix, None, 50)
                .await
                .unwrap();
            eprintln!(
                "prefix search in 100k contacts took {:?}",
                started.elapsed()
            );
            let SearchPage::Newest { contacts, .. } = page else {
                panic!("not newest first")
            };
            // +4930 2000100 … +4930 2000199: numbers were handed out in the order the contacts
            // were inserted, big's first.
            assert_eq!(contacts.len(), 50);
            assert!(
                contacts.iter().all(|c| c.fields.phone_numbers[0]
                    .e164
                    .as_str()
                    .starts_with("+493020001")),
                "{contacts:?}"
            );
        }
    }
}
