-- SearchContacts (issue 19): contacts by a prefix of their E.164 number ("+4930" finds every
-- Berlin number). The search reads a range of this index, [prefix, prefix with its last digit
-- raised by one), which is the set of numbers with that prefix only in byte order: '+' and
-- digits sort so under "C" whatever the database's collation, whereas a linguistic collation
-- (en_US.UTF-8) may ignore the '+' or order by more than one level. contact_phone_numbers_e164_idx
-- keeps serving the exact lookups of IdentifyCaller in the database's collation.
CREATE INDEX contact_phone_numbers_e164_prefix_idx
    ON contact_phone_numbers (account_id, e164 COLLATE "C");
