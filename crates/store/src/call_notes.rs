//! Call notes and the exactly-once delivery of caller messages.
