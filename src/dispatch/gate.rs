//! The one gate: whether an order may get a refund request under a key never used before.
//!
//! An order is one refund. Every path that would send an order's refund under a new key — a
//! first send, `run --retry-failed`, `reconcile --confirm-not-created` — asks [`refuse_new_key`]
//! first, and it refuses while a refund of that (environment, terminal, order id) exists that is
//! not a definite failure: this order's own record still live, or any other record of the order
//! in this ledger, under any method, key namespace or file. An order id that differs only by
//! letter case from one the ledger holds is the same order unless the user said otherwise.
//! What Payroc itself holds is the pre-send lookup's part: a record the gate lets through is
//! marked for it (see [`crate::ledger::RefundRecord::needs_precheck`]).
//!
//! The ledger enforces the same rule with triggers, so a path that forgot to ask fails loudly
//! instead of refunding twice.

use crate::ledger::{Ledger, LedgerError, RefundRecord};
use crate::payroc::body::PreparedRefund;
use crate::refund::{RefundStatus, RowNote};

/// Why a new key is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKey {
    /// The ledger has no record of the order: its first key.
    FirstSend,
    /// `run --retry-failed`: the order's refund definitely failed and the user asks again.
    RetryFailed,
    /// `reconcile --confirm-not-created`: a person confirmed, from a complete lookup, that Payroc
    /// has no refund for the order.
    ConfirmedNotCreated,
}

impl RefundRecord {
    /// Whether this record's current generation refunded nothing, for certain: declined,
    /// returned, or rejected before any request of it may have reached Payroc.
    pub fn is_definite_failure(&self) -> bool {
        match self.state {
            RefundStatus::Declined | RefundStatus::Returned => true,
            RefundStatus::Rejected => !self.may_have_reached,
            _ => false,
        }
    }
}

/// Why `prepared`'s order may not get a new key for `reason`, or `None` when it may. `own` is
/// the order's own record (`None` for a first send).
pub fn refuse_new_key(
    ledger: &Ledger,
    prepared: &PreparedRefund,
    own: Option<&RefundRecord>,
    reason: NewKey,
    allow_case_variants: bool,
) -> Result<Option<RowNote>, LedgerError> {
    if let Some(own) = own
        && let Some(note) = own_record_refuses(own, reason)
    {
        return Ok(Some(note));
    }
    let identity = &prepared.identity;
    let others = ledger.same_order(
        identity.environment,
        &identity.processing_terminal_id,
        &identity.order_id,
        own.map(|own| own.id),
    )?;
    for (other, file) in others {
        let where_it_is = format!(
            "row {} of {} on {}",
            other.input_row.map_or_else(|| "?".to_owned(), |row| row.to_string()),
            file.as_deref().unwrap_or("an earlier file"),
            other.created_at.get(..10).unwrap_or(&other.created_at),
        );
        if other.order_id != identity.order_id || other.processing_terminal_id != identity.processing_terminal_id {
            if allow_case_variants {
                continue;
            }
            return Ok(Some(RowNote {
                status: RefundStatus::Conflict,
                error: format!(
                    "terminal {:?} and order id {:?} differ only by letter case from {:?} and {:?}, which the ledger already has ({where_it_is}, {}); \
                     Payroc would take them for two orders, so this would be a second refund. \
                     Pass --allow-case-variants if they really are different orders",
                    identity.processing_terminal_id,
                    identity.order_id,
                    other.processing_terminal_id,
                    other.order_id,
                    other.state.in_results(),
                ),
            }));
        }
        if !other.is_definite_failure() {
            let how = if other.method == prepared.method {
                "under another key namespace or an earlier version's key".to_owned()
            } else {
                format!("by {}", other.method)
            };
            return Ok(Some(RowNote {
                status: RefundStatus::Conflict,
                error: format!(
                    "the ledger already has a refund for this order {how}: {where_it_is} ({}, {} {} minor units); \
                     one order is one refund, so this row is not sent. A different refund needs a different order_id",
                    other.state.in_results(),
                    other.amount_minor,
                    other.currency,
                ),
            }));
        }
    }
    Ok(None)
}

/// Why the order's own record does not allow a new key for `reason`.
fn own_record_refuses(own: &RefundRecord, reason: NewKey) -> Option<RowNote> {
    match reason {
        NewKey::FirstSend => Some(RowNote {
            status: own.state.in_results(),
            error: "the ledger already has this order; it keeps its key".into(),
        }),
        NewKey::RetryFailed if own.is_definite_failure() => None,
        NewKey::RetryFailed if own.state == RefundStatus::Rejected => Some(RowNote {
            status: RefundStatus::Unknown,
            error:
                "rejected, but an earlier request of this refund may have reached Payroc: not sent under a new key. \
                    Run `refund-batch reconcile` on this file"
                    .into(),
        }),
        NewKey::RetryFailed => Some(RowNote {
            status: own.state.in_results(),
            error: format!(
                "this refund is {}, not a definite failure: it is never sent again under a new key",
                own.state.in_results()
            ),
        }),
        NewKey::ConfirmedNotCreated => match own.state {
            RefundStatus::Unknown | RefundStatus::Sending | RefundStatus::Pending => None,
            _ => Some(RowNote {
                status: own.state.in_results(),
                error: format!(
                    "--confirm-not-created applies only to unknown rows; this one is {}",
                    own.state.in_results()
                ),
            }),
        },
    }
}
