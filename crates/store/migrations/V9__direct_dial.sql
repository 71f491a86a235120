-- Direct dial (issue 17): the number whose extensions a stored number answers
-- (`callers_domain::phone::dial_base`), so that a caller's number finds it by exact probes of
-- its own prefixes. '' when the number has none (mobile numbers, closed numbering plans);
-- NULL until computed. The rule lives in Rust: `migrate` fills the NULL rows after the SQL
-- migrations, existing ones and those a previous release writes during a rollout.
ALTER TABLE contact_phone_numbers ADD COLUMN dial_base text;

-- The lookup: exact probes of (account, prefix), never a range scan.
CREATE INDEX contact_phone_numbers_dial_base_idx ON contact_phone_numbers (account_id, dial_base)
    WHERE dial_base <> '';

-- What the backfill still has to compute: empty once it has run, so a run with nothing to do
-- costs one probe.
CREATE INDEX contact_phone_numbers_dial_base_pending_idx
    ON contact_phone_numbers (account_id, contact_id, position)
    WHERE dial_base IS NULL;
