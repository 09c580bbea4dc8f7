//! refund-batch: send a day's file of Payroc unreferenced refunds exactly once.
//!
//! A finance team's CSV of refunds (to cards and to bank accounts) goes through a pipeline whose
//! every step is built around one promise — no refund is ever sent twice, and none is silently
//! lost:
//!
//! 1. `input` reads the file into `refund::RefundRow`s (amounts in minor units) and checks every
//!    row before anything is sent (`input::file_check`).
//! 2. `dispatch` streams it again; for each row `payroc::body` builds the exact body bytes and
//!    `refund::key` the deterministic key, `ledger` decides whether it still needs sending and
//!    commits `sending` before `payroc::client` sends it at the allowed rate, with retries; the
//!    answer, in Payroc's words, becomes a ledger state through one table (`dispatch::outcome`).
//! 3. `report` writes one line per input row from the ledger, atomically, and owns the terminal.
//!
//! `files` holds what `ledger` and `report` share of the file system: files created 0600, and
//! the atomic replace (temporary file, fsync, rename, directory fsync).
//!
//! The face is [`cli`] (parsing), [`config`] (the config file), [`commands`] (one module per
//! command, the API key, Ctrl-C) and [`exit`] (the exit codes). Only those, and what `main` needs
//! to set up the terminal, are public: the pipeline's parts are this crate's own. The local
//! Payroc stand-in used by `--env sandbox` and the tests is the separate crate `payroc-sandbox`,
//! written independently of these request types.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod core_dumps;
pub mod exit;
pub mod report;

mod dispatch;
mod files;
mod input;
mod ledger;
mod payroc;
mod refund;
