//! Integration tests: the real `refund-batch` binary against a Payroc sandbox on loopback.

// Helpers: scratch directories, the hermetic command, the sandbox.
mod util;

// The main path: every row exactly once, re-runs, new ledgers, invalid files, results.
mod end_to_end;

// What a cron job reads: JSON logs, progress, totals for people and for programs.
mod logs;

// Every exit code and each path to it, as a table of the tests that take them.
mod exit_codes;

// Each fault alone: tokens, 429, 5xx, drops, unknown rows, reconcile, locks, signals.
mod faults;

// Each way the promise was once broken, reproduced and closed.
mod exactly_once;

// One key per order, a ledger that vouches only for its own time, Payroc's clock.
mod promise;

// Every answer Payroc's specification allows, and following refunds until they are final.
mod payroc_answers;

// A ledger written by an earlier version upgrades in place.
mod upgrade;

// Everything at once, with SIGKILL at random moments.
mod chaos;

// Power cuts modelled from an strace of the binary: only what was fsynced survives.
mod power_cut;

// Screens pinned as snapshots, and the production guard rails.
mod screens;

// Input that fights back: encodings, NUL, runaway cells, ragged rows, delimiters, empty and large files.
mod hostile;

// Output paths never replace the input, the ledger or its side files.
mod outputs;

// Data protection: formula cells neutralised, no full number or unkeyed hash of one at rest.
mod data_protection;

// Shared pieces of the seeded tests: the generator.
mod support;

// A seeded random walk over sequences of user steps, with the invariants checked after each.
mod search;

// The workbook, read back with an independent reader: typed cells, totals, the rows for a person.
mod workbook;
