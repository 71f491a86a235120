-- TRUNCATE fires no row or statement trigger of V5, so emptying contacts left every word of
-- contact_words and account_words behind: words no contact carries, found by name searches
-- that then lead nowhere. Now the word tables are emptied with contacts.
CREATE FUNCTION contact_words_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE contact_words, account_words;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_words_truncate AFTER TRUNCATE ON contacts
    FOR EACH STATEMENT EXECUTE FUNCTION contact_words_truncate();
