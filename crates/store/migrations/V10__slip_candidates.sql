-- A third way for the name search to find a word of the account: the same first letter, a
-- length at most one apart, and an edit distance (fuzzystrmatch's Levenshtein) of at most two.
--
-- Trigrams miss one slip in a short name: "Weeer" keeps a third of Weber's trigrams, "Klzin"
-- a third of Klein's, below any threshold that leaves few words; Kölner Phonetik misses them
-- too (the slip changes the code). The ranking (callers_domain::identification) still decides
-- whether such a word is a typo: this only brings it to the table.
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
CREATE INDEX account_words_shape_idx ON account_words (account_id, left(word, 1), length(word));
