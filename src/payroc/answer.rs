//! Payroc's answers, in Payroc's words: a created refund as its body describes it, a refusal
//! with its problem, "no answer", or a failure that stops the run. Nothing here decides a ledger
//! state — the dispatcher's outcome table does, from these.

use reqwest::StatusCode;
use serde::Deserialize;

use crate::refund::redaction::redact_digit_runs;

/// Errors that stop a whole run rather than one row.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SystemicError {
    /// Payroc refused the API key or every token (401/403 from `/authorize`, or a 401 right after a refresh).
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// The local clock is too far off Payroc's (see [`crate::clock`]): nothing may be sent.
    #[error("{0}")]
    ClockSkew(String),
    /// The identity service could not be reached after retries.
    #[error("cannot get a bearer token from {url}: {detail}")]
    IdentityUnreachable {
        /// The authorize URL.
        url: String,
        /// What went wrong last.
        detail: String,
    },
}

/// What came of sending one refund (with all its retries), in Payroc's words.
#[derive(Debug, Clone)]
pub enum SendResult {
    /// A 2xx: Payroc created (or replayed) a refund. `refund` is `None` when the body is not a
    /// refund at all (not JSON, or not an object).
    Created {
        /// The HTTP status.
        http_status: u16,
        /// The refund as the body describes it.
        refund: Option<Box<CreatedRefund>>,
    },
    /// A final refusal: 400, 403, 404, 406, 409, 415 or another status not worth retrying.
    Refused {
        /// The HTTP status.
        http_status: u16,
        /// The problem's `type`, if the body was a problem.
        problem_type: Option<String>,
        /// Title, detail and `errors[]`, redacted, in one line.
        detail: String,
    },
    /// Retries ran out. `maybe_reached` is false only when no request could have reached
    /// Payroc (every failure was a refused connection or a 429), so the row can stay `pending`.
    GaveUp {
        /// Whether any request may have been processed.
        maybe_reached: bool,
        /// The last failure, for the results' error column.
        detail: String,
        /// Last HTTP status seen, if any.
        http_status: Option<u16>,
    },
    /// The run must stop: credentials are bad or the identity service is gone. The row's
    /// request did not get through (a 401 means not processed), so it goes back to `pending`.
    Systemic(SystemicError),
}

impl SendResult {
    /// The failure in one line, for a row's error column.
    pub fn detail(&self) -> String {
        match self {
            SendResult::GaveUp { detail, .. } => detail.clone(),
            SendResult::Systemic(error) => error.to_string(),
            SendResult::Refused {
                http_status, detail, ..
            } => format!("HTTP {http_status}: {detail}"),
            SendResult::Created { http_status, .. } => format!("HTTP {http_status}"),
        }
    }
}

/// Everything [`PayrocClient::send_refund`] reports: the result and how many HTTP requests it took.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// The result.
    pub result: SendResult,
    /// HTTP requests sent (1 + retries + 401 re-sends).
    pub requests: u32,
    /// Whether a request may have reached Payroc without a definite answer. When it did, a
    /// stop for a systemic reason leaves the row `unknown`, not `pending`.
    pub maybe_reached: bool,
}

/// A refund as Payroc's body describes it (created, replayed or listed). Every field is
/// optional here: which absences matter is the dispatcher's outcome table's decision.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreatedRefund {
    /// Payroc's 10-character `refundId`.
    pub refund_id: Option<String>,
    /// `order`: what the refund was for.
    #[serde(default)]
    pub order: Option<RefundOrder>,
    /// `transactionResult`.
    #[serde(default)]
    pub transaction_result: Option<TransactionResult>,
    /// `customFields` as Payroc kept them (it leaves out names not set up in its portal).
    #[serde(default)]
    pub custom_fields: Option<Vec<CustomField>>,
}

/// One `customFields` entry of an answer.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
pub struct CustomField {
    /// The field's name.
    pub name: Option<String>,
}

/// `order` of a refund.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefundOrder {
    /// The merchant's order id.
    pub order_id: Option<String>,
    /// Minor units.
    pub amount: Option<i64>,
    /// Currency code.
    pub currency: Option<String>,
    /// When Payroc made it (ISO 8601).
    pub date_time: Option<String>,
}

/// `transactionResult` of a refund.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TransactionResult {
    /// `ready`, `pending`, `declined`, `complete`, …
    pub status: Option<String>,
    /// `A`, `D`, `E`, `P`, `R`, `C` (card); optional for bank transfers.
    pub response_code: Option<String>,
    /// Payroc's message, e.g. `OK5`.
    pub response_message: Option<String>,
    /// `approvalCode`.
    pub approval_code: Option<String>,
    /// `processorResponseCode`.
    pub processor_response_code: Option<String>,
    /// `authorizedAmount` in minor units, negative when money goes to the customer: an integer
    /// for cards, a JSON number for bank transfers. `Err` holds the text of one that is not a
    /// whole number of minor units (never rounded).
    #[serde(default, deserialize_with = "minor_units")]
    pub authorized_amount: Option<Result<i64, String>>,
}

/// Reads a JSON number as an exact whole number of minor units, from its text: `-4999`,
/// `-4999.0` and `-4.999e3` are -4999; `-4999.5` or a value past `i64` is `Err` with the text.
fn minor_units<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Result<i64, String>>, D::Error> {
    let raw: Option<Box<serde_json::value::RawValue>> = Option::deserialize(deserializer)?;
    Ok(raw.map(|raw| exact_whole_number(raw.get()).ok_or_else(|| raw.get().to_owned())))
}

/// The integer a JSON number's text denotes exactly, if it is one that fits in `i64`.
fn exact_whole_number(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let mut digits = format!("{whole}{fraction}");
    let mut scale = exponent.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    // Drop zeros the negative scale cancels; a digit that is not zero is a fraction.
    while scale < 0 {
        if !digits.ends_with('0') {
            return None;
        }
        digits.pop();
        scale += 1;
    }
    let mut value: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    for _ in 0..scale {
        value = value.checked_mul(10)?;
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

#[derive(Deserialize, Default)]
pub(crate) struct PayrocProblem {
    #[serde(rename = "type")]
    kind: Option<String>,
    title: Option<String>,
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<ProblemItem>,
}

/// Whether a 409 says the key's first request is still being processed (two senders of one
/// order at once, or a re-send overtaking its own first try): not a conflict, but "ask again
/// later" with the same key and bytes. Payroc documents no wording for it, so the problem's
/// words are read: anything that speaks of processing or progress, and not of a different
/// request (the key used for another body, which is a real conflict).
pub(crate) fn still_being_processed(status: reqwest::StatusCode, body: &[u8]) -> bool {
    if status != reqwest::StatusCode::CONFLICT {
        return false;
    }
    let problem: PayrocProblem = serde_json::from_slice(body).unwrap_or_default();
    let words = format!(
        "{} {} {}",
        problem.kind.as_deref().unwrap_or_default(),
        problem.title.as_deref().unwrap_or_default(),
        problem.detail.as_deref().unwrap_or_default()
    )
    .to_ascii_lowercase();
    let in_progress = [
        "being processed",
        "in progress",
        "in-progress",
        "still processing",
        "currently processing",
    ]
    .iter()
    .any(|phrase| words.contains(phrase));
    in_progress && !words.contains("different request")
}

#[derive(Deserialize, Default)]
struct ProblemItem {
    parameter: Option<String>,
    detail: Option<String>,
    message: Option<String>,
}

impl PayrocProblem {
    /// `Forbidden — API key not allowed`: the title and the detail, redacted, or the status's
    /// reason when the body was not a problem.
    pub(crate) fn summary(&self, status: StatusCode) -> String {
        let parts: Vec<&str> = [self.title.as_deref(), self.detail.as_deref()]
            .into_iter()
            .flatten()
            .filter(|part| !part.trim().is_empty())
            .collect();
        let text = match parts.as_slice() {
            [] => status.canonical_reason().unwrap_or("no explanation").to_owned(),
            [title, detail] if title == detail => (*title).to_owned(),
            parts => parts.join(" — "),
        };
        redact_digit_runs(&text)
    }

    /// One line a person can act on: title, detail, and each `errors[]` item as `parameter: message`.
    pub(crate) fn describe(&self, status: StatusCode) -> String {
        let mut parts = Vec::new();
        if let Some(title) = &self.title {
            parts.push(title.clone());
        }
        if let Some(detail) = self
            .detail
            .as_ref()
            .filter(|detail| Some(*detail) != self.title.as_ref())
        {
            parts.push(detail.clone());
        }
        for item in &self.errors {
            let text = item
                .message
                .as_ref()
                .or(item.detail.as_ref())
                .cloned()
                .unwrap_or_default();
            parts.push(match &item.parameter {
                Some(parameter) => format!("{parameter}: {text}"),
                None => text,
            });
        }
        if parts.is_empty() {
            parts.push(format!("HTTP {status}"));
        }
        let mut text = redact_digit_runs(&parts.join("; "));
        if text.len() > 500 {
            let mut cut = 500;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

/// Pages of one order's refunds read at most: far more than any real order has (each page holds
/// 100), so reaching it means the paging does not end.
pub(crate) const MAX_LIST_PAGES: usize = 50;

/// The most pages a terminal's listing is followed for (a million refunds): a look-up before
/// sending reads the terminal's refunds over its window once for all its rows.
pub(crate) const MAX_TERMINAL_LIST_PAGES: usize = 10_000;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefundList {
    #[serde(default)]
    pub(crate) data: Vec<CreatedRefund>,
    /// More pages exist: the list so far is not complete.
    #[serde(default)]
    pub(crate) has_more: bool,
    #[serde(default)]
    links: Vec<ListLink>,
}

#[derive(Deserialize, Default)]
struct ListLink {
    rel: Option<String>,
    href: Option<String>,
}

impl RefundList {
    /// The `after` cursor of the next page: from the `next` link when Payroc gives one (the
    /// cursor is opaque), else the last refund's id.
    pub(crate) fn next_cursor(&self) -> Option<String> {
        let from_link = self
            .links
            .iter()
            .find(|link| link.rel.as_deref() == Some("next"))
            .and_then(|link| reqwest::Url::parse(link.href.as_deref()?).ok())
            .and_then(|url| {
                url.query_pairs()
                    .find(|(name, _)| name == "after")
                    .map(|(_, value)| value.into_owned())
            });
        from_link.or_else(|| self.data.last().and_then(|refund| refund.refund_id.clone()))
    }
}

/// Reads a final answer (anything but 401, 408, 429 and 5xx) in Payroc's words.
pub(crate) fn answer_of(status: StatusCode, bytes: &[u8]) -> SendResult {
    if status.is_success() {
        let refund = serde_json::from_slice::<Box<CreatedRefund>>(bytes)
            .ok()
            .map(|mut refund| {
                if let Some(result) = refund.transaction_result.as_mut() {
                    result.response_message = result.response_message.as_deref().map(redact_digit_runs);
                }
                refund
            });
        return SendResult::Created {
            http_status: status.as_u16(),
            refund,
        };
    }
    let problem: PayrocProblem = serde_json::from_slice(bytes).unwrap_or_default();
    SendResult::Refused {
        http_status: status.as_u16(),
        problem_type: problem.kind.clone(),
        detail: problem.describe(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_are_reported_in_payrocs_words() {
        let body = br#"{"refundId":"CD3HN88U9F","order":{"orderId":"R1","amount":4999,"currency":"USD"},"transactionResult":{"status":"ready","responseCode":"A","responseMessage":"OK5"}}"#;
        let SendResult::Created {
            http_status: 201,
            refund: Some(refund),
        } = answer_of(StatusCode::CREATED, body)
        else {
            panic!("a 201 is a created refund")
        };
        assert_eq!(refund.refund_id.as_deref(), Some("CD3HN88U9F"));
        assert_eq!(refund.order.and_then(|order| order.order_id).as_deref(), Some("R1"));
        assert!(matches!(
            answer_of(StatusCode::CREATED, b"<html>ok</html>"),
            SendResult::Created { refund: None, .. }
        ));
        let problem = br#"{"type":"https://docs.payroc.com/api/errors#bad-request","title":"Bad request","status":400,"detail":"Validation failed","errors":[{"parameter":"order.amount","message":"must be positive"}]}"#;
        let SendResult::Refused {
            http_status: 400,
            problem_type,
            detail,
        } = answer_of(StatusCode::BAD_REQUEST, problem)
        else {
            panic!("a 400 is a refusal")
        };
        assert_eq!(
            problem_type.as_deref(),
            Some("https://docs.payroc.com/api/errors#bad-request")
        );
        assert_eq!(detail, "Bad request; Validation failed; order.amount: must be positive");
    }

    #[test]
    fn authorized_amounts_are_read_exactly_and_fractions_refused() {
        for (text, expected) in [
            ("-4999", Some(-4999)),
            ("-4999.0", Some(-4999)),
            ("-4999.000", Some(-4999)),
            ("-4.999e3", Some(-4999)),
            ("-49990E-1", Some(-4999)),
            ("0", Some(0)),
            ("0.0", Some(0)),
            ("-4999.5", None),
            ("-4999.0000000000001", None),
            ("-4.9995e3", None),
            ("99999999999999999999", None),
            ("1e400", None),
        ] {
            assert_eq!(exact_whole_number(text), expected, "{text}");
        }
        let result: TransactionResult =
            serde_json::from_str(r#"{"status":"ready","authorizedAmount":-4999.5}"#).unwrap();
        assert_eq!(result.authorized_amount, Some(Err("-4999.5".to_owned())));
        let result: TransactionResult =
            serde_json::from_str(r#"{"status":"ready","authorizedAmount":-4999.0}"#).unwrap();
        assert_eq!(result.authorized_amount, Some(Ok(-4999)));
        let result: TransactionResult = serde_json::from_str(r#"{"status":"ready"}"#).unwrap();
        assert_eq!(result.authorized_amount, None);
    }

    #[test]
    fn the_next_page_cursor_comes_from_the_next_link_or_the_last_refund() {
        let list: RefundList = serde_json::from_str(
            r#"{"hasMore":true,"links":[{"rel":"next","method":"get","href":"https://api.payroc.com/v1/refunds?limit=100&after=8516"}],"data":[{"refundId":"AAAAAAAAAA"}]}"#,
        )
        .unwrap();
        assert_eq!(list.next_cursor().as_deref(), Some("8516"));
        let list: RefundList =
            serde_json::from_str(r#"{"hasMore":true,"data":[{"refundId":"AAAAAAAAAA"},{"refundId":"BBBBBBBBBB"}]}"#)
                .unwrap();
        assert_eq!(list.next_cursor().as_deref(), Some("BBBBBBBBBB"));
    }
}
