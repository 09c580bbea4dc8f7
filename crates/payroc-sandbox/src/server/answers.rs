//! What the processor answers a new refund: its verdict from the test values, and the 201 body
//! Payroc's shape gives it (the authorized amount, the custom fields it knows).

use super::*;

/// What the processor says about a new refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verdict {
    /// `transactionResult.status`.
    pub(super) status: &'static str,
    /// `transactionResult.responseCode`; `None`: the answer has none.
    pub(super) code: Option<&'static str>,
    /// `transactionResult.responseMessage`.
    pub(super) message: &'static str,
    /// `transactionResult.processorResponseCode`.
    pub(super) processor_code: &'static str,
}

/// The answer for each documented test value.
pub(super) fn verdict(kind: Kind, outcome: Outcome) -> Verdict {
    use Outcome::*;
    let v = |status, code, message, processor_code| Verdict {
        status,
        code,
        message,
        processor_code,
    };
    match kind {
        Kind::Card => match outcome {
            Declined => v("declined", Some("D"), "DECLINED", "05"),
            Referral => v("declined", Some("R"), "CALL ISSUER", "05"),
            Queued => v("pending", Some("E"), "QUEUED", "05"),
            KeepCard => v("declined", Some("C"), "PICK UP CARD", "04"),
            Partial => v("ready", Some("P"), "PARTIAL APPROVAL", "10"),
            ApprovedButDeclined => v("declined", Some("A"), "OK5", "00"),
            // The bank-only outcomes never come from a card body.
            Approved | DeclinedWithoutCode | PendingWithoutCode | ReturnedLater | DecimalAmount => {
                v("ready", Some("A"), "OK5", "00")
            }
        },
        Kind::Bank => match outcome {
            Declined => v("declined", Some("D"), "Declined", "0"),
            DeclinedWithoutCode => v("declined", None, "Declined", "0"),
            PendingWithoutCode => v("pending", None, "Pending", "0"),
            // The code says approved, the status says declined: a client must not count it.
            ApprovedButDeclined => v("declined", Some("A"), "NoError", "0"),
            // The card-only outcomes never come from a bank body.
            Approved | ReturnedLater | DecimalAmount | Referral | Queued | KeepCard | Partial => {
                v("ready", Some("A"), "NoError", "0")
            }
        },
    }
}

/// `transactionResult.authorizedAmount`, negative because the money goes to
/// the customer. Card (an integer): the whole amount when approved (`A`,
/// also with a contradicting status) or queued (`E`), half of it rounded
/// toward zero for a partial approval (`P`), 0 when declined (`D`, `R`,
/// `C`). Bank (a JSON number): the whole amount, written with a decimal
/// point (`-4999.0`) for the decimal-amount test account.
pub(super) fn authorized_amount(v: &ValidRefund, verdict: &Verdict) -> Value {
    match v.kind {
        Kind::Card => match verdict.code {
            Some("A" | "E") => json!(-v.amount),
            Some("P") => json!(-(v.amount / 2)),
            _ => json!(0),
        },
        // Exact for every amount up to 2^53 minor units.
        Kind::Bank if v.outcome == Outcome::DecimalAmount => json!(-(v.amount as f64)),
        Kind::Bank => json!(-v.amount),
    }
}

/// `customFields` as the response shows them: only the names the sandbox
/// knows (case-sensitive), as Payroc leaves out names not set up for the
/// merchant; `None` when none is left.
pub(super) fn known_custom_fields(sent: &Value, known: &[String]) -> Option<Value> {
    let kept: Vec<Value> = sent
        .as_array()?
        .iter()
        .filter(|f| {
            f.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| known.iter().any(|k| k == name))
        })
        .cloned()
        .collect();
    (!kept.is_empty()).then_some(Value::Array(kept))
}

pub(super) fn build_body(
    v: &ValidRefund,
    refund_id: &str,
    verdict: &Verdict,
    known_fields: &[String],
    seq: u64,
    date_time: &str,
) -> Vec<u8> {
    let mut body = serde_json::Map::new();
    body.insert("refundId".into(), json!(refund_id));
    body.insert("processingTerminalId".into(), json!(v.terminal));
    if let Some(op) = &v.operator {
        body.insert("operator".into(), json!(op));
    }
    body.insert(
        "order".into(),
        json!({
            "orderId": v.order_id,
            "dateTime": date_time,
            "description": v.description,
            "amount": v.amount,
            "currency": v.currency,
        }),
    );
    if let Some(c) = &v.customer {
        body.insert("customer".into(), c.clone());
    }
    let mut tr = json!({
        "type": match v.kind {
            Kind::Card => "refund",
            Kind::Bank => "unreferencedRefund",
        },
        "status": verdict.status,
        "authorizedAmount": authorized_amount(v, verdict),
        "currency": v.currency,
        "responseMessage": verdict.message,
        "processorResponseCode": verdict.processor_code,
    });
    if let Some(code) = verdict.code {
        tr["responseCode"] = json!(code);
    }
    match v.kind {
        Kind::Card => {
            body.insert("card".into(), v.instrument.clone());
            if matches!(verdict.code, Some("A" | "P" | "E")) {
                tr["approvalCode"] = json!(format!("{:06}", seq % 1_000_000));
            }
        }
        Kind::Bank => {
            body.insert("bankAccount".into(), v.instrument.clone());
        }
    }
    body.insert("transactionResult".into(), tr);
    if let Some(cf) = v
        .custom_fields
        .as_ref()
        .and_then(|cf| known_custom_fields(cf, known_fields))
    {
        body.insert("customFields".into(), cf);
    }
    serde_json::to_vec(&body).expect("refund body serializes")
}
