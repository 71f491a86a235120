-- Issue 22: privacy on request. Erasure of a caller (contacts deleted, call notes redacted to
-- skeletons), suppression of a number by keyed hash, subject-access export, call-note retention
-- per account, and account offboarding; every such request audited without personal data.

-- The caller's number in E.164 (normalised in the account's region when the note was written),
-- so an erasure or export by number finds the notes that hold it; NULL when it does not parse.
-- Filled for older notes by the migration runner (crates/store/src/migrate.rs).
ALTER TABLE call_notes ADD COLUMN caller_e164 text;
ALTER TABLE call_notes ADD COLUMN caller_e164_filled boolean NOT NULL DEFAULT false;
CREATE INDEX call_notes_caller_e164_idx ON call_notes (account_id, caller_e164)
    WHERE caller_e164 IS NOT NULL;
CREATE INDEX call_notes_caller_e164_fill_idx ON call_notes (account_id, call_note_id)
    WHERE NOT caller_e164_filled;
-- An erased caller's notes stay as skeletons (ids, times, agent, employee).
ALTER TABLE call_notes ADD COLUMN redact_time timestamptz;

-- Unset: call notes are kept.
ALTER TABLE call_handling ADD COLUMN call_note_retention_days integer;
-- The retention chore walks notes by call time across accounts that set a retention.
CREATE INDEX call_notes_call_time_idx ON call_notes (call_time, account_id, call_note_id);

-- Numbers whose caller asked not to be recorded: only keyed hashes (HMAC-SHA256 of account and
-- E.164, with the deployment's key `key_id`), one row per key the number was hashed with.
CREATE TABLE suppressions (
    account_id  text        NOT NULL,
    hash        bytea       NOT NULL,
    key_id      text        NOT NULL,
    erasure_id  uuid        NOT NULL,
    create_time timestamptz NOT NULL,
    PRIMARY KEY (account_id, hash)
);

-- Every privacy request served: ids, counts, times and the token's name; never a name, a number
-- or a text. An erasure by number keeps the number's keyed hash (and its key's id), so that
-- erasures can be applied again to a restored backup (docs/OPERATIONS.md).
CREATE TABLE privacy_requests (
    account_id  text        NOT NULL,
    request_id  uuid        NOT NULL,
    kind        text        NOT NULL,
    request_time timestamptz NOT NULL,
    token_name  text        NOT NULL,
    contact_ids uuid[]      NOT NULL DEFAULT '{}',
    number_hash bytea,
    key_id      text,
    -- counts per kind of row (JSON object of integers)
    counts      jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (account_id, request_id),
    CHECK (kind IN ('erasure', 'suppression_lifted', 'export'))
);
CREATE INDEX privacy_requests_time_idx ON privacy_requests (request_time);

-- Account offboarding: one row per account whose data is being or was deleted; the only row of
-- the account that stays (the proof that it was deleted, with counts, no personal data).
CREATE TABLE account_deletions (
    account_id  text        NOT NULL PRIMARY KEY,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz,
    token_name  text        NOT NULL,
    deleted     jsonb       NOT NULL DEFAULT '{}'
);
