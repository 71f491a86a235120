-- Name search reads the word tables (V5) since; nothing reads contacts.phonetic_keys any more.
-- The column stays until every running server has stopped writing it (docs/OPERATIONS.md:
-- add, deploy, remove); a later migration drops it.
DROP INDEX IF EXISTS contacts_phonetic_idx;
