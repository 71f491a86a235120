-- The change feed (crates/store/src/feed.rs): every write records its changes in the same
-- transaction, numbered per account by a counter row that the transaction bumps as its last
-- statement. The row lock is held until commit, so numbers are gap-free and in commit order.

CREATE TABLE change_counters (
    account_id text   NOT NULL PRIMARY KEY,
    -- the number of the account's latest committed change; 0 before the first
    seq        bigint NOT NULL
);

CREATE TABLE changes (
    account_id    text        NOT NULL,
    seq           bigint      NOT NULL,
    change_time   timestamptz NOT NULL,
    -- the contract's ChangeType number
    kind          smallint    NOT NULL,
    contact_id    uuid,
    call_note_id  uuid,
    message_id    uuid,
    -- CONTACT_DELETED: the contract's DeleteReason number
    reason        smallint,
    -- CONTACT_EXPIRING: the last activity its purge time follows from
    activity_time timestamptz,
    -- the resource after the change (JSON of the domain type), for changes that carry one
    resource      jsonb,
    PRIMARY KEY (account_id, seq)
);
-- Pruning by age.
CREATE INDEX changes_change_time_idx ON changes (change_time);

-- CONTACT_EXPIRING is sent once per purge time: the last activity it was sent for.
ALTER TABLE contacts ADD COLUMN expiry_notice_for timestamptz;
