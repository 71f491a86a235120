-- The whole schema of callers. account_id leads every primary key, so every table can be
-- distributed by account (Citus) when one PostgreSQL is not enough.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE TABLE contacts (
    account_id           text        NOT NULL,
    contact_id           uuid        NOT NULL,
    categories           text[]      NOT NULL,
    salutation           text        NOT NULL DEFAULT '',
    title                text        NOT NULL DEFAULT '',
    first_name           text        NOT NULL DEFAULT '',
    last_name            text        NOT NULL DEFAULT '',
    company              text        NOT NULL DEFAULT '',
    email                text        NOT NULL DEFAULT '',
    handling_instruction text        NOT NULL DEFAULT '',
    keep_permanently     boolean     NOT NULL DEFAULT false,
    origin               smallint    NOT NULL,
    message_id           uuid,
    message_text         text,
    message_create_time  timestamptz,
    create_time          timestamptz NOT NULL,
    update_time          timestamptz NOT NULL,
    last_activity_time   timestamptz NOT NULL,
    version              bigint      NOT NULL DEFAULT 1,
    -- folded names for search (see callers_domain::names), written with every change
    search_text          text        NOT NULL DEFAULT '',
    phonetic_keys        text[]      NOT NULL DEFAULT '{}',
    -- the retention rule's "subject to automatic deletion" (callers_domain::retention)
    purge_candidate      boolean GENERATED ALWAYS AS
                             (categories = ARRAY['caller']::text[] AND NOT keep_permanently) STORED,
    PRIMARY KEY (account_id, contact_id),
    CHECK ((message_id IS NULL) = (message_text IS NULL)),
    CHECK ((message_id IS NULL) = (message_create_time IS NULL))
);

-- The purge walks candidates by age across accounts; ListExpiringContacts within one account.
CREATE INDEX contacts_purge_idx ON contacts (last_activity_time, account_id, contact_id)
    WHERE purge_candidate;
CREATE INDEX contacts_expiring_idx ON contacts (account_id, last_activity_time, contact_id)
    WHERE purge_candidate;
CREATE INDEX contacts_search_trgm_idx ON contacts USING gin (account_id, search_text gin_trgm_ops);
CREATE INDEX contacts_phonetic_idx ON contacts USING gin (account_id, phonetic_keys);

CREATE TABLE contact_phone_numbers (
    account_id text     NOT NULL,
    contact_id uuid     NOT NULL,
    position   smallint NOT NULL,
    number     text     NOT NULL,
    e164       text     NOT NULL,
    phone_type smallint NOT NULL,
    PRIMARY KEY (account_id, contact_id, position),
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts ON DELETE CASCADE
);
-- The incoming-call lookup: one index probe.
CREATE INDEX contact_phone_numbers_e164_idx ON contact_phone_numbers (account_id, e164);

CREATE TABLE call_notes (
    account_id        text        NOT NULL,
    call_note_id      uuid        NOT NULL,
    contact_id        uuid,
    employee_id       text        NOT NULL DEFAULT '',
    agent_id          text        NOT NULL DEFAULT '',
    caller_first_name text        NOT NULL DEFAULT '',
    caller_last_name  text        NOT NULL DEFAULT '',
    caller_company    text        NOT NULL DEFAULT '',
    caller_number     text        NOT NULL DEFAULT '',
    subject           text        NOT NULL DEFAULT '',
    body              text        NOT NULL DEFAULT '',
    call_time         timestamptz NOT NULL,
    create_time       timestamptz NOT NULL,
    PRIMARY KEY (account_id, call_note_id),
    -- call notes outlive their contact
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts ON DELETE SET NULL (contact_id)
);
-- ListCallNotes: newest call first, keyset on (call_time, call_note_id).
CREATE INDEX call_notes_account_idx ON call_notes (account_id, call_time DESC, call_note_id DESC);
CREATE INDEX call_notes_contact_idx
    ON call_notes (account_id, contact_id, call_time DESC, call_note_id DESC);
CREATE INDEX call_notes_employee_idx
    ON call_notes (account_id, employee_id, call_time DESC, call_note_id DESC);

-- One row per delivered caller message; the key makes a second delivery impossible.
CREATE TABLE message_deliveries (
    account_id   text        NOT NULL,
    message_id   uuid        NOT NULL,
    call_note_id uuid        NOT NULL,
    text         text        NOT NULL,
    deliver_time timestamptz NOT NULL,
    agent_id     text        NOT NULL DEFAULT '',
    PRIMARY KEY (account_id, message_id),
    FOREIGN KEY (account_id, call_note_id) REFERENCES call_notes ON DELETE CASCADE
);
CREATE INDEX message_deliveries_note_idx ON message_deliveries (account_id, call_note_id);

CREATE TABLE call_handling (
    account_id             text        NOT NULL PRIMARY KEY,
    conversation_style     smallint    NOT NULL,
    caller_id_transmission boolean     NOT NULL,
    phone_region           text        NOT NULL,
    version                bigint      NOT NULL DEFAULT 1,
    update_time            timestamptz NOT NULL
);

CREATE TABLE employee_call_handling (
    account_id             text     NOT NULL REFERENCES call_handling ON DELETE CASCADE,
    employee_id            text     NOT NULL,
    position               integer  NOT NULL,
    conversation_style     smallint,
    caller_id_transmission boolean,
    PRIMARY KEY (account_id, employee_id)
);

-- Replays of writes a client may retry. Holds ids only, never request contents.
CREATE TABLE idempotency_keys (
    account_id   text        NOT NULL,
    request_id   uuid        NOT NULL,
    operation    text        NOT NULL,
    request_hash bytea       NOT NULL,
    result       jsonb       NOT NULL,
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (account_id, request_id)
);
CREATE INDEX idempotency_keys_create_time_idx ON idempotency_keys (create_time);

-- Purge audit: ids and times only, never names, numbers or texts.
CREATE TABLE purge_runs (
    run_id         uuid        NOT NULL PRIMARY KEY,
    start_time     timestamptz NOT NULL,
    end_time       timestamptz,
    cutoff_time    timestamptz NOT NULL,
    retention_days integer     NOT NULL,
    dry_run        boolean     NOT NULL,
    outcome        text        NOT NULL,
    deleted        bigint      NOT NULL DEFAULT 0,
    CHECK (outcome IN ('running', 'succeeded', 'interrupted', 'failed'))
);

CREATE TABLE purged_contacts (
    account_id         text        NOT NULL,
    contact_id         uuid        NOT NULL,
    run_id             uuid        NOT NULL REFERENCES purge_runs,
    last_activity_time timestamptz NOT NULL,
    delete_time        timestamptz NOT NULL,
    PRIMARY KEY (account_id, contact_id)
);
CREATE INDEX purged_contacts_delete_time_idx ON purged_contacts (delete_time);
