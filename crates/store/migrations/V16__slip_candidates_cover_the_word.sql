-- The slip candidates' index (V10) carries the word itself, so that the probe per query word
-- reads only its first letter and lengths, from the index alone. Without the word the planner
-- preferred the primary key when it expected few words per account (a table of many small
-- accounts), and read every word of a large account for every query word.
DROP INDEX account_words_shape_idx;
CREATE INDEX account_words_shape_idx ON account_words (account_id, left(word, 1), length(word))
    INCLUDE (word);
