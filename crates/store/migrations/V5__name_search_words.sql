-- Name search by word.
--
-- IdentifyCaller used to match the caller's words against every contact's folded search_text
-- (trigram and phonetic GIN indexes on contacts). In an account of 100,000 contacts a common
-- name such as "Hans Müller" selects about 8,000 contacts that way, and each was fetched,
-- rechecked and scored: 90-190 ms per lookup (crates/bench, BENCHMARKS.md). Now the caller's
-- words are first matched against the account's distinct words (a few thousand, by trigrams
-- and by Kölner Phonetik), and only the words that match lead, through a btree, to contacts.
--
-- Both tables are derived from contacts.search_text by the triggers below, so every writer
-- keeps them current (the server, the purge worker, COPY, hand-written SQL); they hold nothing
-- that contacts does not, and lose a word once no contact of the account carries it.

-- Kölner Phonetik of one folded word: the SQL twin of callers_domain::names::koelner_phonetik
-- (identify.rs tests that they agree). Only letters a-z count, as search words are folded.
CREATE FUNCTION koelner_phonetik(word text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    s      text := regexp_replace(word, '[^a-z]', '', 'g');
    n      int  := length(s);
    c      text;
    prev   text;
    nxt    text;
    code   text;
    d      text;
    last   text := NULL;
    digits text := '';
BEGIN
    FOR i IN 1..n LOOP
        c := substr(s, i, 1);
        prev := CASE WHEN i > 1 THEN substr(s, i - 1, 1) END;
        nxt := CASE WHEN i < n THEN substr(s, i + 1, 1) END;
        code := CASE
            WHEN c IN ('a', 'e', 'i', 'j', 'o', 'u', 'y') THEN '0'
            WHEN c = 'h' THEN ''
            WHEN c = 'b' THEN '1'
            WHEN c = 'p' THEN CASE WHEN nxt = 'h' THEN '3' ELSE '1' END
            WHEN c IN ('d', 't') THEN CASE WHEN nxt IN ('c', 's', 'z') THEN '8' ELSE '2' END
            WHEN c IN ('f', 'v', 'w') THEN '3'
            WHEN c IN ('g', 'k', 'q') THEN '4'
            WHEN c = 'c' THEN CASE
                WHEN prev IN ('s', 'z') THEN '8'
                WHEN i = 1 AND nxt IN ('a', 'h', 'k', 'l', 'o', 'q', 'r', 'u', 'x') THEN '4'
                WHEN i > 1 AND nxt IN ('a', 'h', 'k', 'o', 'q', 'u', 'x') THEN '4'
                ELSE '8' END
            WHEN c = 'x' THEN CASE WHEN prev IN ('c', 'k', 'q') THEN '8' ELSE '48' END
            WHEN c = 'l' THEN '5'
            WHEN c IN ('m', 'n') THEN '6'
            WHEN c = 'r' THEN '7'
            WHEN c IN ('s', 'z') THEN '8'
            ELSE ''
        END;
        FOR j IN 1..length(code) LOOP
            d := substr(code, j, 1);
            IF last IS DISTINCT FROM d THEN
                digits := digits || d;
                last := d;
            END IF;
        END LOOP;
    END LOOP;
    RETURN substr(digits, 1, 1) || replace(substr(digits, 2), '0', '');
END
$$;

-- One row per word of a contact's search_text.
CREATE TABLE contact_words (
    account_id text NOT NULL,
    word       text NOT NULL,
    contact_id uuid NOT NULL,
    PRIMARY KEY (account_id, word, contact_id)
);

-- The distinct words of an account, with their Kölner Phonetik code.
CREATE TABLE account_words (
    account_id text NOT NULL,
    word       text NOT NULL,
    phonetic   text NOT NULL,
    PRIMARY KEY (account_id, word)
);

-- Inserts (statement level, so a COPY or a batch adds its words in one go). The phonetic code
-- is computed once per new distinct word.
CREATE FUNCTION contact_words_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_words (account_id, word, contact_id)
    SELECT n.account_id, w.word, n.contact_id
    FROM new_contacts n, unnest(string_to_array(n.search_text, ' ')) AS w(word)
    WHERE w.word <> ''
    ON CONFLICT DO NOTHING;
    WITH pairs AS (
        SELECT DISTINCT n.account_id, w.word
        FROM new_contacts n, unnest(string_to_array(n.search_text, ' ')) AS w(word)
        WHERE w.word <> ''
    ), missing AS (
        SELECT p.account_id, p.word FROM pairs p
        WHERE NOT EXISTS (SELECT 1 FROM account_words a
                          WHERE a.account_id = p.account_id AND a.word = p.word)
    ), codes AS (
        SELECT word, koelner_phonetik(word) AS phonetic FROM (SELECT DISTINCT word FROM missing) x
    )
    INSERT INTO account_words (account_id, word, phonetic)
    SELECT m.account_id, m.word, c.phonetic FROM missing m JOIN codes c ON c.word = m.word
    ORDER BY m.account_id, m.word
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- Words no contact of the account carries any more leave the account's word list. Writers
-- take the rows of account_words in (account_id, word) order, here and in the inserts above,
-- so two of them never wait for each other in a circle.
--
-- One race is left open on purpose: a contact saved with a word while, concurrently, the last
-- other contact carrying it is deleted can leave that word out of account_words (locking
-- every word on every insert would serialise all writers of an account). The word stays
-- findable as typed, since the search also probes the caller's exact words; its typos and
-- phonetic twins come back once any contact with that word is saved again.
CREATE FUNCTION contact_words_forget(accounts text[], words text[]) RETURNS void
LANGUAGE sql AS $$
    WITH g AS (
        SELECT DISTINCT account_id, word FROM unnest(accounts, words) AS g(account_id, word)
    ), unused AS MATERIALIZED (
        SELECT g.account_id, g.word FROM g
        WHERE NOT EXISTS (SELECT 1 FROM contact_words w
                          WHERE w.account_id = g.account_id AND w.word = g.word)
    ), orphans AS (
        SELECT a.account_id, a.word FROM account_words a JOIN unused u USING (account_id, word)
        ORDER BY a.account_id, a.word
        FOR UPDATE OF a
    )
    DELETE FROM account_words a USING orphans o
    WHERE a.account_id = o.account_id AND a.word = o.word;
$$;

CREATE FUNCTION contact_words_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    accounts text[];
    words    text[];
BEGIN
    WITH gone AS (
        DELETE FROM contact_words w USING old_contacts o
        WHERE w.account_id = o.account_id AND w.contact_id = o.contact_id
        RETURNING w.account_id, w.word
    )
    SELECT array_agg(account_id), array_agg(word) INTO accounts, words FROM gone;
    IF accounts IS NOT NULL THEN
        PERFORM contact_words_forget(accounts, words);
    END IF;
    RETURN NULL;
END
$$;

-- A changed name (row level: the WHEN clause keeps every other update, such as the activity
-- time a call note moves, free of any work here).
CREATE FUNCTION contact_words_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    accounts text[];
    words    text[];
BEGIN
    WITH gone AS (
        DELETE FROM contact_words w
        WHERE w.account_id = OLD.account_id AND w.contact_id = OLD.contact_id
          AND w.word <> ALL (string_to_array(NEW.search_text, ' '))
        RETURNING w.account_id, w.word
    )
    SELECT array_agg(account_id), array_agg(word) INTO accounts, words FROM gone;
    INSERT INTO contact_words (account_id, word, contact_id)
    SELECT NEW.account_id, w.word, NEW.contact_id
    FROM unnest(string_to_array(NEW.search_text, ' ')) AS w(word)
    WHERE w.word <> ''
    ON CONFLICT DO NOTHING;
    INSERT INTO account_words (account_id, word, phonetic)
    SELECT NEW.account_id, g.word, koelner_phonetik(g.word)
    FROM (SELECT DISTINCT w.word FROM unnest(string_to_array(NEW.search_text, ' ')) AS w(word)
          WHERE w.word <> '') g
    WHERE NOT EXISTS (SELECT 1 FROM account_words a
                      WHERE a.account_id = NEW.account_id AND a.word = g.word)
    ORDER BY g.word
    ON CONFLICT DO NOTHING;
    IF accounts IS NOT NULL THEN
        PERFORM contact_words_forget(accounts, words);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER contact_words_insert AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION contact_words_insert();
CREATE TRIGGER contact_words_delete AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION contact_words_delete();
CREATE TRIGGER contact_words_update AFTER UPDATE OF search_text ON contacts
    FOR EACH ROW WHEN (OLD.search_text IS DISTINCT FROM NEW.search_text)
    EXECUTE FUNCTION contact_words_update();

-- Existing contacts (before the secondary indexes, which are built once afterwards).
INSERT INTO contact_words (account_id, word, contact_id)
SELECT c.account_id, w.word, c.contact_id
FROM contacts c, unnest(string_to_array(c.search_text, ' ')) AS w(word)
WHERE w.word <> ''
ON CONFLICT DO NOTHING;
WITH codes AS (
    SELECT word, koelner_phonetik(word) AS phonetic FROM (SELECT DISTINCT word FROM contact_words) x
)
INSERT INTO account_words (account_id, word, phonetic)
SELECT g.account_id, g.word, c.phonetic
FROM (SELECT DISTINCT account_id, word FROM contact_words) g JOIN codes c ON c.word = g.word;

CREATE INDEX contact_words_contact_idx ON contact_words (account_id, contact_id);
CREATE INDEX account_words_trgm_idx ON account_words USING gin (account_id, word gin_trgm_ops);
CREATE INDEX account_words_phonetic_idx ON account_words (account_id, phonetic);
