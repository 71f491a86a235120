-- The trigram indexes that every new contact and word is written to take the entries into
-- their own tree at once, instead of collecting them in a pending list (up to
-- gin_pending_list_limit, 4 MB) that the one insert which fills it must merge: in steady
-- call-note writes that was one contact insert every 30 s taking 0.5 to 1 s (BENCHMARKS.md,
-- round 13). A partitioned index cannot be altered, so the words' index is built again (a few
-- seconds per million contacts; word writes wait meanwhile).
ALTER INDEX contacts_search_trgm_idx SET (fastupdate = off);
DROP INDEX account_words_trgm_idx;
CREATE INDEX account_words_trgm_idx ON account_words USING gin (account_id, word gin_trgm_ops)
    WITH (fastupdate = off);
