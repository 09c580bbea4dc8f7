//! Payroc's response schemas as `Rule` constants: the shared parts, card refunds, bank-transfer
//! refunds, problems and the identity service's token, then the string formats they name.

use super::Rule::{self, Array, Boolean, Integer, Matches, Number, Object, OneOf, Str};

const ANY_STRING: Rule = Str {
    min: 0,
    max: usize::MAX,
};

// ---- shared parts ----

/// `currency`: an ISO 4217 alphabetic code (Payroc lists 171 of them).
const CURRENCY: Rule = Matches("an ISO 4217 code (three capital letters)", |s| {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
});

/// `format: date-time` (ISO 8601 / RFC 3339, with a time zone).
const DATE_TIME: Rule = Matches("an RFC 3339 date-time", is_date_time);

/// `link`: all three required.
const LINK: Rule = Object {
    required: &["rel", "method", "href"],
    fields: &[("rel", ANY_STRING), ("method", ANY_STRING), ("href", ANY_STRING)],
};

/// `customField`.
const CUSTOM_FIELD: Rule = Object {
    required: &["name", "value"],
    fields: &[("name", Str { min: 1, max: 56 }), ("value", Str { min: 1, max: 100 })],
};

/// `contactMethod`.
const CONTACT_METHOD: Rule = Object {
    required: &["type", "value"],
    fields: &[
        ("type", OneOf(&["email", "phone", "mobile", "fax"])),
        ("value", Str { min: 1, max: 50 }),
    ],
};

/// `address`.
const ADDRESS: Rule = Object {
    required: &["address1", "city", "state", "country", "postalCode"],
    fields: &[
        ("address1", Str { min: 1, max: 150 }),
        ("address2", Str { min: 0, max: 150 }),
        ("address3", Str { min: 0, max: 150 }),
        ("city", Str { min: 1, max: 50 }),
        ("state", Str { min: 1, max: 50 }),
        ("country", Str { min: 2, max: 2 }),
        ("postalCode", Str { min: 1, max: 10 }),
    ],
};

/// `customer` (card refunds): every field optional.
const CUSTOMER: Rule = Object {
    required: &[],
    fields: &[
        ("firstName", Str { min: 0, max: 60 }),
        ("lastName", Str { min: 0, max: 60 }),
        ("dateOfBirth", Matches("a date YYYY-MM-DD", is_date)),
        ("referenceNumber", Str { min: 0, max: 48 }),
        ("billingAddress", ADDRESS),
        (
            "shippingAddress",
            Object {
                required: &[],
                fields: &[("recipientName", Str { min: 0, max: 50 }), ("address", ADDRESS)],
            },
        ),
        ("contactMethods", Array(&CONTACT_METHOD)),
        ("notificationLanguage", OneOf(&["en", "fr"])),
    ],
};

/// `bankTransferCustomer`.
const BANK_CUSTOMER: Rule = Object {
    required: &[],
    fields: &[
        ("notificationLanguage", OneOf(&["en", "fr"])),
        ("contactMethods", Array(&CONTACT_METHOD)),
    ],
};

/// `secureTokenSummary`.
const SECURE_TOKEN_SUMMARY: Rule = Object {
    required: &["secureTokenId", "customerName", "token", "status"],
    fields: &[
        ("secureTokenId", Str { min: 1, max: 200 }),
        ("customerName", Str { min: 1, max: 50 }),
        ("token", Str { min: 12, max: 19 }),
        (
            "status",
            OneOf(&[
                "notValidated",
                "cvvValidated",
                "validationFailed",
                "issueNumberValidated",
                "cardNumberValidated",
                "bankAccountValidated",
            ]),
        ),
        ("link", LINK),
    ],
};

// ---- card refunds ----

/// `refundOrder`: the base `order` narrowed for refunds.
const CARD_ORDER: Rule = Object {
    required: &["orderId", "amount", "currency", "description"],
    fields: &[
        ("orderId", Str { min: 1, max: 24 }),
        ("dateTime", DATE_TIME),
        ("description", Str { min: 1, max: 256 }),
        ("amount", Integer),
        ("currency", CURRENCY),
        (
            "dccOffer",
            Object {
                required: &[],
                fields: &[],
            },
        ),
    ],
};

/// `card`.
const CARD: Rule = Object {
    required: &["type", "entryMethod", "cardNumber", "expiryDate"],
    fields: &[
        ("type", ANY_STRING),
        (
            "entryMethod",
            OneOf(&[
                "icc",
                "keyed",
                "swiped",
                "swipedFallback",
                "contactlessIcc",
                "contactlessMsr",
            ]),
        ),
        ("cardholderName", Str { min: 1, max: 50 }),
        ("cardholderSignature", ANY_STRING),
        (
            "cardNumber",
            Matches("a masked card number: first 6, ******, last 4", is_masked_pan),
        ),
        (
            "expiryDate",
            Matches("MMYY, four digits", |s| s.len() == 4 && all_digits(s)),
        ),
        ("secureToken", SECURE_TOKEN_SUMMARY),
    ],
};

/// `transactionResult` of a card transaction.
const CARD_RESULT: Rule = Object {
    required: &["status", "responseCode"],
    fields: &[
        (
            "type",
            OneOf(&["sale", "refund", "preAuthorization", "preAuthorizationCompletion"]),
        ),
        (
            "status",
            OneOf(&[
                "ready", "pending", "declined", "complete", "referral", "pickup", "reversal", "admin", "expired",
                "accepted",
            ]),
        ),
        ("approvalCode", Str { min: 1, max: 48 }),
        ("authorizedAmount", Integer),
        ("currency", CURRENCY),
        ("responseCode", OneOf(&["A", "D", "E", "P", "R", "C"])),
        ("responseMessage", Str { min: 1, max: 48 }),
        ("processorResponseCode", ANY_STRING),
        ("cardSchemeReferenceId", Str { min: 1, max: 64 }),
    ],
};

/// `refund` (the 201 of `POST /refunds`, `GET /refunds/{refundId}`).
pub(super) const CARD_REFUND: Rule = Object {
    required: &["refundId", "processingTerminalId", "order", "card", "transactionResult"],
    fields: &[
        ("refundId", Str { min: 10, max: 10 }),
        ("processingTerminalId", Str { min: 4, max: 50 }),
        ("operator", Str { min: 0, max: 50 }),
        ("order", CARD_ORDER),
        ("customer", CUSTOMER),
        ("card", CARD),
        ("transactionResult", CARD_RESULT),
        ("customFields", Array(&CUSTOM_FIELD)),
    ],
};

/// `refundPaginatedList` (`limit`, `count`, `hasMore`, `links` and `data`
/// are all always sent).
pub(super) const CARD_LIST: Rule = Object {
    required: &["limit", "count", "hasMore", "links", "data"],
    fields: &[
        ("limit", Number),
        ("count", Number),
        ("hasMore", Boolean),
        ("links", Array(&LINK)),
        ("data", Array(&CARD_REFUND)),
    ],
};

// ---- bank-transfer refunds ----

/// `bankTransferRefundOrder`.
const BANK_ORDER: Rule = Object {
    required: &["orderId", "amount", "currency", "description"],
    fields: &[
        ("orderId", Str { min: 1, max: 24 }),
        ("dateTime", DATE_TIME),
        ("description", Str { min: 0, max: 256 }),
        ("amount", Integer),
        ("currency", CURRENCY),
    ],
};

/// `achBankAccount` (`accountType` is not in the schema, but Payroc's own
/// example response carries it).
const ACH_ACCOUNT: Rule = Object {
    required: &["type", "nameOnAccount", "accountNumber", "routingNumber"],
    fields: &[
        ("type", OneOf(&["ach"])),
        ("secCode", OneOf(&["web", "tel", "ccd", "ppd"])),
        ("nameOnAccount", Str { min: 1, max: 50 }),
        (
            "accountNumber",
            Matches("4-17 characters, all but the last 4 masked", is_masked_account),
        ),
        (
            "routingNumber",
            Matches("9 characters, all but the last 4 masked", is_masked_routing),
        ),
        ("secureToken", SECURE_TOKEN_SUMMARY),
        ("accountType", OneOf(&["checking", "savings"])),
    ],
};

/// `bankTransferResult` (`responseCode`: `A` or `D`, no enum in the schema).
pub(super) const BANK_RESULT: Rule = Object {
    required: &["type", "status", "responseMessage"],
    fields: &[
        (
            "type",
            OneOf(&["payment", "refund", "unreferencedRefund", "accountVerification"]),
        ),
        (
            "status",
            OneOf(&[
                "ready", "pending", "declined", "complete", "admin", "reversal", "returned",
            ]),
        ),
        ("authorizedAmount", Number),
        ("currency", CURRENCY),
        ("responseCode", ANY_STRING),
        ("responseMessage", Str { min: 1, max: 48 }),
        ("processorResponseCode", ANY_STRING),
    ],
};

/// `bankTransferRefund`.
pub(super) const BANK_REFUND: Rule = Object {
    required: &[
        "refundId",
        "processingTerminalId",
        "order",
        "bankAccount",
        "transactionResult",
    ],
    fields: &[
        ("refundId", Str { min: 10, max: 10 }),
        ("processingTerminalId", Str { min: 4, max: 50 }),
        ("order", BANK_ORDER),
        ("customer", BANK_CUSTOMER),
        ("bankAccount", ACH_ACCOUNT),
        ("transactionResult", BANK_RESULT),
        ("customFields", Array(&CUSTOM_FIELD)),
    ],
};

/// `bankTransferRefundPaginatedList`.
pub(super) const BANK_LIST: Rule = Object {
    required: &["limit", "count", "hasMore", "links", "data"],
    fields: &[
        ("limit", Number),
        ("count", Number),
        ("hasMore", Boolean),
        ("links", Array(&LINK)),
        ("data", Array(&BANK_REFUND)),
    ],
};

// ---- problems and identity ----

/// One entry of `errors[]` (400, 409, 500): every field optional.
const PROBLEM_ERROR: Rule = Object {
    required: &[],
    fields: &[
        ("parameter", ANY_STRING),
        ("detail", ANY_STRING),
        ("message", ANY_STRING),
    ],
};

/// The problem responses (400, 401, 403, 404, 409, 415, 500): `type`,
/// `title`, `status` and `detail` always; `errors` on 400/409/500,
/// `instance` on 403/409, `resource` on 403/404, `link` on 409.
pub(super) const PROBLEM: Rule = Object {
    required: &["type", "title", "status", "detail"],
    fields: &[
        (
            "type",
            Matches("a Payroc problem URI", |s| {
                s.strip_prefix("https://docs.payroc.com/api/errors#")
                    .is_some_and(|t| !t.is_empty())
            }),
        ),
        (
            "title",
            Str {
                min: 1,
                max: usize::MAX,
            },
        ),
        ("status", Integer),
        (
            "detail",
            Str {
                min: 1,
                max: usize::MAX,
            },
        ),
        ("instance", ANY_STRING),
        ("resource", ANY_STRING),
        ("errors", Array(&PROBLEM_ERROR)),
        ("link", LINK),
    ],
};

/// The identity service's token response.
pub(super) const TOKEN: Rule = Object {
    required: &["access_token", "token_type", "expires_in"],
    fields: &[
        (
            "access_token",
            Str {
                min: 1,
                max: usize::MAX,
            },
        ),
        ("token_type", OneOf(&["Bearer"])),
        ("expires_in", Integer),
        ("scope", ANY_STRING),
    ],
};

// ---- the string formats the rules name ----

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_masked_pan(s: &str) -> bool {
    let n = s.len();
    (12..=19).contains(&n)
        && s.is_ascii()
        && all_digits(&s[..6])
        && s[6..n - 4].bytes().all(|b| b == b'*')
        && all_digits(&s[n - 4..])
}

fn is_masked_account(s: &str) -> bool {
    let n = s.len();
    (4..=17).contains(&n) && s.is_ascii() && s[..n - 4].bytes().all(|b| b == b'*') && all_digits(&s[n - 4..])
}

fn is_masked_routing(s: &str) -> bool {
    s.len() == 9 && s.is_ascii() && s[..5].bytes().all(|b| b == b'*') && all_digits(&s[5..])
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && all_digits(&s[..4]) && all_digits(&s[5..7]) && all_digits(&s[8..])
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn is_date_time(s: &str) -> bool {
    if !s.is_ascii() || s.len() < 20 || !is_date(&s[..10]) || s.as_bytes()[10] != b'T' {
        return false;
    }
    let t = &s[11..];
    let clock = t.len() >= 8
        && all_digits(&t[..2])
        && &t[2..3] == ":"
        && all_digits(&t[3..5])
        && &t[5..6] == ":"
        && all_digits(&t[6..8]);
    if !clock {
        return false;
    }
    let mut rest = &t[8..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    rest == "Z"
        || (rest.len() == 6
            && matches!(&rest[..1], "+" | "-")
            && all_digits(&rest[1..3])
            && &rest[3..4] == ":"
            && all_digits(&rest[4..]))
}
