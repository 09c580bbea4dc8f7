//! Payroc's HTTP API as this tool uses it: the client ([`client`]: bearer token, the two refund
//! calls and the lookups, with retries from [`retry`]), the exact request bodies ([`body`]), the timer the rate limiter is waited on ([`alarm`]), and
//! the answers in Payroc's words ([`answer`]).
//!
//! It knows nothing of the ledger or the dispatcher: it sends what it is given and reports what
//! came back. Deciding what an answer means for a refund is the dispatcher's outcome table.

pub mod answer;
pub mod body;
pub mod client;
pub mod retry;

pub use answer::{CreatedRefund, SendReport, SendResult, SystemicError};
pub use client::{ClientConfig, PayrocClient};
pub use retry::{RequestLimiter, RetryPolicy};
