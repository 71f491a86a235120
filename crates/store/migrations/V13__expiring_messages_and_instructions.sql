-- Issue 20: caller messages that expire, the record of messages that were never told, typed
-- handling instructions, and the account's time zone.

-- NULL: the message does not expire.
ALTER TABLE contacts ADD COLUMN message_expire_time timestamptz;
ALTER TABLE contacts ADD CONSTRAINT contacts_message_expire_check
    CHECK (message_expire_time IS NULL OR message_id IS NOT NULL);
-- The sweep (crates/store/src/messages.rs) finds expired messages across accounts.
CREATE INDEX contacts_message_expire_idx ON contacts (message_expire_time)
    WHERE message_expire_time IS NOT NULL;

-- Typed handling instructions, JSON of callers_domain::instruction::Instruction.
ALTER TABLE contacts ADD COLUMN instructions jsonb NOT NULL DEFAULT '[]';

-- Messages that left a contact untold: expired, or replaced before they were told. Not tied to
-- the contact by a foreign key: the report outlives a deleted contact until the report period
-- ends (a purge housekeeping chore deletes by end_time).
CREATE TABLE undelivered_messages (
    account_id   text        NOT NULL,
    message_id   uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    text         text        NOT NULL,
    create_time  timestamptz NOT NULL,
    expire_time  timestamptz,
    -- when the message stopped being pending: its expire_time, or the replacing write's time
    end_time     timestamptz NOT NULL,
    -- the contract's UndeliveredReason number
    reason       smallint    NOT NULL,
    PRIMARY KEY (account_id, message_id)
);
-- ListUndeliveredMessages: newest first, keyset on (end_time, message_id), per account or contact.
CREATE INDEX undelivered_messages_account_idx
    ON undelivered_messages (account_id, end_time DESC, message_id DESC);
CREATE INDEX undelivered_messages_contact_idx
    ON undelivered_messages (account_id, contact_id, end_time DESC, message_id DESC);
-- Housekeeping by age.
CREATE INDEX undelivered_messages_end_time_idx ON undelivered_messages (end_time);

-- IANA name; existing accounts get the documented default.
ALTER TABLE call_handling ADD COLUMN time_zone text NOT NULL DEFAULT 'Europe/Berlin';
