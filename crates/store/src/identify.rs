//! Incoming-call lookups: by E.164 number and by folded name / phonetic key.
