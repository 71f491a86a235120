//! The vocabulary and rules of `callers`: validated values, phone normalisation, name folding
//! for search and the retention rule. No I/O: time comes in through a [`Clock`].

pub mod call_counts;
pub mod call_handling;
pub mod call_note;
pub mod change;
pub mod clock;
pub mod contact;
pub mod identification;
pub mod instruction;
pub mod message;
pub mod names;
pub mod phone;
pub mod privacy;
pub mod retention;
pub mod search;
pub mod validation;

pub use clock::{Clock, FixedClock, SystemClock};
pub use validation::{AccountId, Violation, Violations};
