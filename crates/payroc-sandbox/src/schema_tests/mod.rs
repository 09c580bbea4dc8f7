//! Every kind of answer the sandbox gives, checked against Payroc's response
//! schemas.
//!
//! The rules in `rules.rs` are written out by hand from Payroc's OpenAPI
//! reference (the `refund` and `bankTransferRefund` responses with their
//! `card`, `transactionResult`, `bankTransferResult`, `achBankAccount`,
//! `refundOrder`, `bankTransferRefundOrder`, `customer`, `customField` and
//! `secureTokenSummary` parts, the paginated lists and `link`, the problem
//! responses and the identity service's token response). They are literal
//! data, not derived from the sandbox's own code, so a sandbox answer that
//! drifts from Payroc's shape fails here even when the sandbox agrees with
//! itself.
//!
//! Objects are checked strictly: a key the schema does not list is an error,
//! which catches misspelt fields (`authorisedAmount`) that a lenient client
//! would skip over.
//!
//! This module holds the `Rule` type; `checker.rs` applies a rule to a JSON
//! value, and `answers.rs` drives the sandbox through every answer and checks
//! each against its rule.

// The schema rules, as constants, and the string formats they name.
mod rules;
// Applying a rule to a JSON value, and the rules' own test.
mod checker;
// Every answer of the sandbox, each checked against its rule.
mod answers;

/// One schema rule.
enum Rule {
    /// A JSON object: every `required` key present, every key present listed
    /// in `fields` (and valid by its rule).
    Object {
        required: &'static [&'static str],
        fields: &'static [(&'static str, Rule)],
    },
    /// A string of `min..=max` characters.
    Str {
        min: usize,
        max: usize,
    },
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A string the named check accepts.
    Matches(&'static str, fn(&str) -> bool),
    /// A JSON integer (no decimal point or exponent).
    Integer,
    /// Any JSON number.
    Number,
    Boolean,
    /// An array whose items all follow the rule.
    Array(&'static Rule),
}
