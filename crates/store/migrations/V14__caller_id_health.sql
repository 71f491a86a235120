-- Issue 21: the account's own lines, and incoming calls counted per account, employee and day
-- so that recognition can be judged from real calls.

-- As entered, and in E.164 (normalised in the account's phone region), in step.
ALTER TABLE call_handling ADD COLUMN own_numbers text[] NOT NULL DEFAULT '{}';
ALTER TABLE call_handling ADD COLUMN own_e164s text[] NOT NULL DEFAULT '{}';

-- Counts only: no number, name or time of a single call. Written by the server replicas'
-- flushes (one statement each, a few seconds apart), read as a rolling 30 days, dropped by the
-- purge's housekeeping after 31.
CREATE TABLE call_counts (
    account_id     text   NOT NULL,
    -- '' for calls not for a named employee
    employee_id    text   NOT NULL,
    -- UTC
    day            date   NOT NULL,
    calls          bigint NOT NULL,
    without_number bigint NOT NULL,
    own_number     bigint NOT NULL,
    number_found   bigint NOT NULL,
    PRIMARY KEY (account_id, employee_id, day)
);
CREATE INDEX call_counts_day_idx ON call_counts (day);
