//! What the ledger holds of one refund: its state, its record, and the updates an answer makes.
//!
//! The dispatcher reads a [`RefundRecord`] to decide whether a row still needs sending,
//! [`crate::dispatch::outcome`] turns Payroc's answer into a [`RefundUpdate`], and the results
//! and `status` read records back. A row of the `refunds` table becomes a record here and
//! nowhere else ([`read_record`]).

use rusqlite::ToSql;

use super::{BatchId, RefundId};
use crate::refund::key::IdempotencyKey;
use crate::refund::money::Currency;
use crate::refund::{Environment, Method, PayrocRefundId, RefundStatus};

/// Everything the ledger knows about one refund identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    /// Row id in the `refunds` table.
    pub id: RefundId,
    /// [`crate::refund::key::Identity::ledger_id`].
    pub identity: String,
    /// `card` or `bank`.
    pub method: Method,
    /// The terminal.
    pub processing_terminal_id: String,
    /// The order id.
    pub order_id: String,
    /// Key generation in use.
    pub generation: u32,
    /// The key of that generation.
    pub idempotency_key: IdempotencyKey,
    /// Current state.
    pub state: RefundStatus,
    /// Fingerprint of the masked body last sent (or to be sent).
    pub fingerprint: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
    /// Masked payee.
    pub payee_masked: String,
    /// HTTP requests sent so far, all generations.
    pub attempts: i64,
    /// What Payroc last said of the current key generation (nothing yet, for a row never sent).
    pub answer: PayrocAnswer,
    /// When the first request of the current generation left (RFC 3339).
    pub first_sent_at: Option<String>,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Whether a request of the current generation may have reached Payroc without a definite
    /// answer. While true, a refusal is never proof that nothing was created.
    pub may_have_reached: bool,
    /// When a person confirmed that Payroc has no refund for this order (`reconcile
    /// --confirm-not-created`), if ever.
    pub confirmed_not_created_at: Option<String>,
    /// The order must be looked up at Payroc before the first send (first seen by a new ledger).
    pub needs_precheck: bool,
    /// When the ledger first saw this refund (RFC 3339).
    pub created_at: String,
    /// The batch that last touched it.
    pub batch_id: Option<BatchId>,
    /// Its row in that batch's file.
    pub input_row: Option<i64>,
    /// Where it goes.
    pub environment: Environment,
}

/// The fields an answer (or a decision) sets on a refund.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefundUpdate {
    /// The new state.
    pub state: Option<RefundStatus>,
    /// What Payroc said (or, for a decision without an answer, the tool's explanation in
    /// [`PayrocAnswer::problem_detail`]). Replaces the recorded answer, except that a refund id
    /// already recorded is kept when this has none.
    pub answer: PayrocAnswer,
    /// A request of this generation may have reached Payroc. Only ever turns the ledger's flag
    /// on: once set it stays set until the next key generation.
    pub may_have_reached: bool,
}

/// What Payroc said about a refund, in the ledger's columns: the part of a [`RefundRecord`] each
/// answer replaces, carried there by a [`RefundUpdate`].
///
/// One struct, read from a row by one function ([`PayrocAnswer::read`]) and written by one
/// ([`PayrocAnswer::bind`], with [`store_answer!`]'s assignments beside it), so a field Payroc
/// adds is four lines side by side here (the field, its read, its bind, its assignment; a test
/// holds the last two to each other), one migration and one column of the results — not one in
/// each of the record, the update, the reader, the writer and the reset of a new key generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayrocAnswer {
    /// HTTP status of the last response, if any.
    pub http_status: Option<i64>,
    /// Payroc's `refundId`.
    pub refund_id: Option<PayrocRefundId>,
    /// `transactionResult.status`.
    pub payroc_status: Option<String>,
    /// `transactionResult.responseCode`.
    pub response_code: Option<String>,
    /// `transactionResult.responseMessage`.
    pub response_message: Option<String>,
    /// Problem `type` of an error answer.
    pub problem_type: Option<String>,
    /// Problem detail of an error answer, or the tool's own explanation.
    pub problem_detail: Option<String>,
    /// `transactionResult.authorizedAmount`, as a positive number of minor units (a partial
    /// approval's is less than the amount asked).
    pub authorized_amount_minor: Option<i64>,
    /// `transactionResult.approvalCode`.
    pub approval_code: Option<String>,
    /// `transactionResult.processorResponseCode`.
    pub processor_response_code: Option<String>,
    /// Warnings about the answer (a custom field Payroc left out, a status this version does not
    /// know), joined by `; `.
    pub notes: Option<String>,
}

/// The SQL assignments that store a [`PayrocAnswer`] in its columns of `refunds`, from the named
/// parameters [`PayrocAnswer::bind`] binds; a macro so that statements are `concat!`-ed at
/// compile time rather than formatted on every write.
///
/// An answer without a refund id keeps the one already recorded (the refusal of a re-send does
/// not erase the refund the first send made), unless `:keeps_refund_id` is false: a new key
/// generation starts with no answer at all.
macro_rules! store_answer {
    () => {
        "http_status = :http_status, refund_id = COALESCE(:refund_id, CASE WHEN :keeps_refund_id THEN refund_id END), \
         payroc_status = :payroc_status, response_code = :response_code, response_message = :response_message, \
         problem_type = :problem_type, problem_detail = :problem_detail, authorized_amount_minor = :authorized_amount_minor, \
         approval_code = :approval_code, processor_response_code = :processor_response_code, notes = :notes"
    };
}
pub(super) use store_answer;

impl PayrocAnswer {
    /// Reads the answer's columns of a `refunds` row, by name.
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<PayrocAnswer> {
        Ok(PayrocAnswer {
            http_status: row.get("http_status")?,
            refund_id: row.get("refund_id")?,
            payroc_status: row.get("payroc_status")?,
            response_code: row.get("response_code")?,
            response_message: row.get("response_message")?,
            problem_type: row.get("problem_type")?,
            problem_detail: row.get("problem_detail")?,
            authorized_amount_minor: row.get("authorized_amount_minor")?,
            approval_code: row.get("approval_code")?,
            processor_response_code: row.get("processor_response_code")?,
            notes: row.get("notes")?,
        })
    }

    /// The named parameters of [`store_answer!`]: this answer, and whether a refund id already
    /// recorded is kept when the answer has none (see there). The caller adds its statement's own.
    pub(super) fn bind(&self, keeps_refund_id: bool) -> [(&'static str, &dyn ToSql); 12] {
        [
            (":http_status", &self.http_status),
            (":refund_id", &self.refund_id),
            (":keeps_refund_id", if keeps_refund_id { &true } else { &false }),
            (":payroc_status", &self.payroc_status),
            (":response_code", &self.response_code),
            (":response_message", &self.response_message),
            (":problem_type", &self.problem_type),
            (":problem_detail", &self.problem_detail),
            (":authorized_amount_minor", &self.authorized_amount_minor),
            (":approval_code", &self.approval_code),
            (":processor_response_code", &self.processor_response_code),
            (":notes", &self.notes),
        ]
    }
}

/// What a new identity is created with.
pub struct NewRefund<'a> {
    /// Identity string.
    pub identity: &'a str,
    /// Where it goes.
    pub environment: Environment,
    /// `card` / `bank`.
    pub method: Method,
    /// Terminal.
    pub processing_terminal_id: &'a str,
    /// Order id.
    pub order_id: &'a str,
    /// Generation-0 key.
    pub idempotency_key: IdempotencyKey,
    /// Masked-body fingerprint.
    pub fingerprint: &'a str,
    /// Minor units.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
    /// Masked payee.
    pub payee_masked: &'a str,
    /// Look the order up at Payroc before the first send (see [`RefundRecord::needs_precheck`]).
    pub needs_precheck: bool,
}

impl RefundRecord {
    /// Says, in words, how a row (its amount, currency and masked payee) differs from what the
    /// ledger recorded for this refund.
    pub fn describe_change(&self, amount_minor: i64, currency: Currency, payee_masked: &str) -> String {
        let mut changes = Vec::new();
        if self.amount_minor != amount_minor || self.currency != currency {
            changes.push(format!(
                "amount was {} {} minor units, now {} {}",
                self.amount_minor, self.currency, amount_minor, currency
            ));
        }
        if self.payee_masked != payee_masked {
            changes.push(format!("payee was {}, now {}", self.payee_masked, payee_masked));
        }
        if changes.is_empty() {
            changes.push("another field such as the description, card, customer or custom fields differs".into());
        }
        changes.join("; ")
    }
}

/// Reads a row of `refunds` (selected with `SELECT refunds.*`) into a record, each column by its
/// name, so a column a migration adds shifts none of the others. A state, method, currency or
/// environment this version does not know is the inner `Err`: a corrupt ledger, which the caller
/// reports with the ledger's path.
pub(super) fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RefundRecord, String>> {
    match record_of(row) {
        Ok(record) => Ok(Ok(record)),
        Err(Unreadable::Sqlite(error)) => Err(error),
        Err(Unreadable::Unknown(message)) => Ok(Err(message)),
    }
}

/// Why a column could not be read: SQLite failed, or it holds a name this version does not know.
pub(super) enum Unreadable {
    /// SQLite failed (or the column has the wrong type).
    Sqlite(rusqlite::Error),
    /// What the column held, in words: a corrupt ledger.
    Unknown(String),
}

impl From<rusqlite::Error> for Unreadable {
    fn from(error: rusqlite::Error) -> Unreadable {
        Unreadable::Sqlite(error)
    }
}

/// A value the ledger stores as text in the one form the tool writes (a name of a closed set,
/// an Idempotency-Key), and reads back only in that form: anything else in its column is a
/// corrupt ledger, never a default.
pub(super) trait StoredName: Sized {
    /// What the value is, for the corrupt ledger's message.
    const WHAT: &'static str;
    /// The value whose stored name is exactly `text`.
    fn from_stored(text: &str) -> Option<Self>;
}

impl StoredName for RefundStatus {
    const WHAT: &'static str = "refund state";
    fn from_stored(text: &str) -> Option<RefundStatus> {
        RefundStatus::parse_stored(text)
    }
}

impl StoredName for Method {
    const WHAT: &'static str = "method";
    fn from_stored(text: &str) -> Option<Method> {
        Method::parse(text).filter(|method| method.as_str() == text)
    }
}

impl StoredName for Currency {
    const WHAT: &'static str = "currency";
    fn from_stored(text: &str) -> Option<Currency> {
        Currency::from_code(text).filter(|currency| currency.code() == text)
    }
}

impl StoredName for IdempotencyKey {
    const WHAT: &'static str = "Idempotency-Key";
    fn from_stored(text: &str) -> Option<IdempotencyKey> {
        IdempotencyKey::parse(text)
    }
}

impl StoredName for Environment {
    const WHAT: &'static str = "environment";
    fn from_stored(text: &str) -> Option<Environment> {
        Environment::parse(text)
    }
}

/// Reads the text column `column` as a [`StoredName`].
pub(super) fn stored<T: StoredName>(row: &rusqlite::Row<'_>, column: &str) -> Result<T, Unreadable> {
    let text: String = row.get(column)?;
    T::from_stored(&text).ok_or_else(|| Unreadable::Unknown(format!("unknown {} {text:?}", T::WHAT)))
}

fn record_of(row: &rusqlite::Row<'_>) -> Result<RefundRecord, Unreadable> {
    Ok(RefundRecord {
        id: row.get("id")?,
        identity: row.get("identity")?,
        method: stored(row, "method")?,
        processing_terminal_id: row.get("processing_terminal_id")?,
        order_id: row.get("order_id")?,
        generation: row.get("generation")?,
        idempotency_key: stored(row, "idempotency_key")?,
        state: stored(row, "state")?,
        fingerprint: row.get("fingerprint")?,
        amount_minor: row.get("amount_minor")?,
        currency: stored(row, "currency")?,
        payee_masked: row.get("payee_masked")?,
        attempts: row.get("attempts")?,
        answer: PayrocAnswer::read(row)?,
        first_sent_at: row.get("first_sent_at")?,
        updated_at: row.get("updated_at")?,
        may_have_reached: row.get("may_have_reached")?,
        confirmed_not_created_at: row.get("confirmed_not_created_at")?,
        needs_precheck: row.get("needs_precheck")?,
        created_at: row.get("created_at")?,
        batch_id: row.get("batch_id")?,
        input_row: row.get("input_row")?,
        environment: stored(row, "environment")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_column_stored_is_bound_and_read() {
        // Split at the commas outside parentheses: `COALESCE(a, b)` is one value.
        let text = store_answer!();
        let mut assignments: Vec<(&str, &str)> = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (index, character) in text.char_indices() {
            match character {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    assignments.push(text[start..index].trim().split_once(" = ").expect("column = value"));
                    start = index + 1;
                }
                _ => {}
            }
        }
        assignments.push(text[start..].trim().split_once(" = ").expect("column = value"));
        let answer = PayrocAnswer::default();
        let bound: Vec<&str> = answer.bind(true).iter().map(|(name, _)| *name).collect();
        let mut used: Vec<&str> = Vec::new();
        for (column, value) in &assignments {
            assert!(
                value.contains(&format!(":{column}")),
                "{column} is stored from :{column}"
            );
            used.extend(
                value
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .filter(|word| word.starts_with(':')),
            );
        }
        used.sort_unstable();
        used.dedup();
        let mut bound_sorted = bound.clone();
        bound_sorted.sort_unstable();
        assert_eq!(used, bound_sorted, "the parameters stored are the parameters bound");
        // And each stored column is read back: a table with just these columns reads.
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let columns: Vec<&str> = assignments.iter().map(|(column, _)| *column).collect();
        connection
            .execute(&format!("CREATE TABLE answer ({})", columns.join(", ")), [])
            .unwrap();
        connection.execute("INSERT INTO answer DEFAULT VALUES", []).unwrap();
        let read = connection
            .query_row("SELECT * FROM answer", [], PayrocAnswer::read)
            .unwrap();
        assert_eq!(read, PayrocAnswer::default());
    }

    #[test]
    fn states_round_trip_and_classify() {
        for state in RefundStatus::ALL.into_iter().filter(|state| state.is_stored()) {
            assert_eq!(RefundStatus::from_stored(state.as_str()), Some(state));
        }
        assert_eq!(RefundStatus::from_stored("done"), None);
        assert_eq!(
            RefundStatus::from_stored("invalid"),
            None,
            "a row that failed validation is never in the ledger"
        );
        assert!(RefundStatus::Declined.is_retryable_failure());
        assert!(RefundStatus::Rejected.is_retryable_failure());
        for never in [
            RefundStatus::Succeeded,
            RefundStatus::Queued,
            RefundStatus::Unknown,
            RefundStatus::Conflict,
            RefundStatus::Sending,
        ] {
            assert!(!never.is_retryable_failure(), "{never}");
        }
        assert_eq!(RefundStatus::Sending.in_results(), RefundStatus::Unknown);
        for state in RefundStatus::ALL {
            if state != RefundStatus::Sending {
                assert_eq!(state.in_results().as_str(), state.as_str(), "one name per state");
            }
        }
    }
}
