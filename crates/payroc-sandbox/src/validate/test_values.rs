//! The documented test values: the card numbers, tokens and bank accounts whose refunds the
//! sandbox answers with each result Payroc's specification allows, and the outcome each gets.

/// The result the sandbox assigns, chosen by the documented test values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `status` "ready", `responseCode` "A".
    Approved,
    /// `status` "declined", `responseCode` "D".
    Declined,
    /// `responseCode` "R" (declined, call the bank).
    Referral,
    /// `responseCode` "E", `status` "pending".
    Queued,
    /// Card: `responseCode` "C" (declined, keep the card), `status` "declined".
    KeepCard,
    /// Card: `responseCode` "P", `status` "ready", half the amount authorized.
    Partial,
    /// `responseCode` "A" but `status` "declined": a contradicting answer (card, and bank
    /// account [`ACCOUNT_APPROVED_BUT_DECLINED`]).
    ApprovedButDeclined,
    /// Bank: `status` "declined" and no `responseCode` at all.
    DeclinedWithoutCode,
    /// Bank: `status` "pending" and no `responseCode` at all.
    PendingWithoutCode,
    /// Bank: approved now, `status` "returned" once the batch settles.
    ReturnedLater,
    /// Bank: approved, `authorizedAmount` written with a decimal point.
    DecimalAmount,
}

/// Card numbers and tokens with a documented non-approved result.
pub(crate) const CARD_DECLINED: &str = "4000000000000002";
pub(crate) const CARD_REFERRAL: &str = "4000000000000127";
pub(crate) const CARD_QUEUED: &str = "4000000000000119";
pub(crate) const CARD_KEEP_CARD: &str = "4000000000000135";
pub(crate) const CARD_PARTIAL: &str = "4000000000000143";
pub(crate) const CARD_APPROVED_BUT_DECLINED: &str = "4000000000000150";
pub(crate) const TOKEN_DECLINED: &str = "2967530000000002";

/// What a secure token's refund comes to, for card and bank alike: the documented decline token
/// declines, every other token is approved.
pub(super) fn token_outcome(token: &str) -> Outcome {
    if token == TOKEN_DECLINED {
        Outcome::Declined
    } else {
        Outcome::Approved
    }
}

/// Bank account numbers with a documented result.
pub(crate) const ACCOUNT_DECLINED: &str = "99990002";
pub(crate) const ACCOUNT_DECLINED_WITHOUT_CODE: &str = "99990003";
pub(crate) const ACCOUNT_PENDING_WITHOUT_CODE: &str = "99990004";
pub(crate) const ACCOUNT_RETURNED_LATER: &str = "99990005";
pub(crate) const ACCOUNT_DECIMAL_AMOUNT: &str = "99990006";
pub(crate) const ACCOUNT_APPROVED_BUT_DECLINED: &str = "99990007";

pub(super) fn account_outcome(account: &str) -> Outcome {
    match account {
        ACCOUNT_DECLINED => Outcome::Declined,
        ACCOUNT_DECLINED_WITHOUT_CODE => Outcome::DeclinedWithoutCode,
        ACCOUNT_PENDING_WITHOUT_CODE => Outcome::PendingWithoutCode,
        ACCOUNT_RETURNED_LATER => Outcome::ReturnedLater,
        ACCOUNT_DECIMAL_AMOUNT => Outcome::DecimalAmount,
        ACCOUNT_APPROVED_BUT_DECLINED => Outcome::ApprovedButDeclined,
        _ => Outcome::Approved,
    }
}

/// A processing terminal without the unreferenced-refund capability.
pub(crate) const TERMINAL_NO_CAPABILITY: &str = "9999001";
