-- account_words in 16 hash partitions by account.
--
-- The name search matches the caller's words against one account's words through the trigram
-- index on (account_id, word). GIN keeps one posting list per key for the whole table, so a
-- common trigram ("er ") lists the words of every account, and decoding those lists was 30 %
-- of PostgreSQL's time per name lookup (perf, BENCHMARKS.md), though the account has a few
-- thousand words. Per partition the lists are a sixteenth as long: 2.1 -> 0.5 ms per query
-- word. More partitions cost more than they save: each execution of the (generic) name plan
-- opens and locks every partition before pruning, and 64 made a lookup 25 ms slower.
-- The triggers of V5 and V6 name the table only, so they work on the partitioned one.

ALTER TABLE account_words RENAME TO account_words_unpartitioned;
ALTER TABLE account_words_unpartitioned
    RENAME CONSTRAINT account_words_pkey TO account_words_unpartitioned_pkey;
DROP INDEX account_words_trgm_idx;
DROP INDEX account_words_phonetic_idx;

CREATE TABLE account_words (
    account_id text NOT NULL,
    word       text NOT NULL,
    phonetic   text NOT NULL,
    PRIMARY KEY (account_id, word)
) PARTITION BY HASH (account_id);

CREATE TABLE account_words_p00 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 0);
CREATE TABLE account_words_p01 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 1);
CREATE TABLE account_words_p02 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 2);
CREATE TABLE account_words_p03 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 3);
CREATE TABLE account_words_p04 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 4);
CREATE TABLE account_words_p05 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 5);
CREATE TABLE account_words_p06 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 6);
CREATE TABLE account_words_p07 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 7);
CREATE TABLE account_words_p08 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 8);
CREATE TABLE account_words_p09 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 9);
CREATE TABLE account_words_p10 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 10);
CREATE TABLE account_words_p11 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 11);
CREATE TABLE account_words_p12 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 12);
CREATE TABLE account_words_p13 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 13);
CREATE TABLE account_words_p14 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 14);
CREATE TABLE account_words_p15 PARTITION OF account_words FOR VALUES WITH (MODULUS 16, REMAINDER 15);

INSERT INTO account_words (account_id, word, phonetic)
SELECT account_id, word, phonetic FROM account_words_unpartitioned;
DROP TABLE account_words_unpartitioned;

CREATE INDEX account_words_trgm_idx ON account_words USING gin (account_id, word gin_trgm_ops);
CREATE INDEX account_words_phonetic_idx ON account_words (account_id, phonetic);
