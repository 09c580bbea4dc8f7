//! What the dispatcher and reconcile say about their progress, row by row, to whoever shows it:
//! the terminal's bar or plain lines implement [`ProgressReport`], and tests can count with their
//! own. The dispatcher knows nothing of how it is drawn.

use crate::refund::RefundStatus;

/// Receives one call per row as the run settles it.
pub trait ProgressReport: Sync {
    /// A row the ledger already had finished: no request, no time spent in this run.
    fn already_done(&self, state: RefundStatus);
    /// A row held back with a note (a conflict, a refund too old to re-send blindly).
    fn held(&self, status: RefundStatus);
    /// A row whose request, look-up or reconciliation finished in this run.
    fn finished(&self, state: RefundStatus);
}
