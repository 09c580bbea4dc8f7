//! refund-batch: send a day's file of Payroc unreferenced refunds exactly once.
//!
//! A finance team's CSV of refunds (to cards and to bank accounts) goes through a pipeline whose
//! every step is built around one promise — no refund is ever sent twice, and none is silently
//! lost:
//!
//! 1. [`validation`] streams the file through [`input`] (CSV → [`input::RefundRow`], amounts via
//!    [`money`]) and checks every row before anything is sent.
//! 2. [`dispatch`] streams it again; for each row [`request`] builds the exact body bytes and
//!    [`idempotency`] the deterministic key, [`ledger`] decides whether it still needs sending and
//!    commits `sending` before [`client`] sends it at the allowed rate, with retries.
//! 3. [`results`] writes one line per input row from the ledger, atomically.
//!
//! Layout: [`cli`] parses, [`commands`] runs each command, [`output`] owns the terminal,
//! [`signals`] handles Ctrl-C, [`redaction`] keeps secrets out of what is written, [`exit`] has the
//! exit codes. The local Payroc stand-in used by `--env sandbox` and the tests is the separate
//! crate `payroc-sandbox`, written independently of these request types.

pub mod cli;
pub mod commands;
pub mod config;
pub mod core_dumps;
pub mod dispatch;
pub mod exit;
pub mod input;
pub mod ledger;
pub mod payroc;
pub mod refund;
pub mod report;
