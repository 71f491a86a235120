//! The purge: batched deletion of contacts the retention rule makes due, with its audit.
