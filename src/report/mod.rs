//! What the tool tells people: the results CSV ([`results`], one line per input row, written
//! atomically from the ledger, never over a file the tool needs: [`protect`]), counted
//! ([`tally`]); the workbook made from the same lines ([`workbook`]); what to do about each
//! status ([`next_steps`]); the problems of a file ([`errors`]); and the terminal ([`terminal`]:
//! progress, warnings, the summary).
//!
//! It reads the ledger and the refund types; it never reaches into the dispatcher, so how rows
//! are reported does not depend on how they were sent.

pub mod errors;
pub mod next_steps;
pub mod protect;
pub mod results;
pub mod tally;
pub mod terminal;
pub mod workbook;
