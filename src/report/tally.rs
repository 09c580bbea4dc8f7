//! What the results say, counted: rows per status, and rows and amounts per status and
//! currency. Made line by line as the results are written ([`crate::report::results`]), and read
//! by the summary at the end of a command, the batch record and the workbook's *Summary*.

use std::collections::BTreeMap;

use crate::refund::RefundStatus;
use crate::refund::money::{Currency, format_amount_grouped};

/// Counts and sums of what the results say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Rows per status.
    pub rows: BTreeMap<RefundStatus, u64>,
    /// Minor units per (status, currency) for valid rows.
    pub amounts: BTreeMap<(RefundStatus, Currency), i64>,
    /// Valid rows per (status, currency): the rows `amounts` adds up.
    pub rows_by_currency: BTreeMap<(RefundStatus, Currency), u64>,
}

impl Tally {
    /// Counts a valid row's amount under its status and currency.
    pub(crate) fn add_amount(&mut self, status: RefundStatus, currency: Currency, minor: i64) {
        *self.amounts.entry((status, currency)).or_insert(0) += minor;
        *self.rows_by_currency.entry((status, currency)).or_insert(0) += 1;
    }

    /// Rows with `status`.
    pub fn count(&self, status: RefundStatus) -> u64 {
        self.rows.get(&status).copied().unwrap_or(0)
    }

    /// Rows with any status `which` selects.
    pub fn count_where(&self, which: impl Fn(RefundStatus) -> bool) -> u64 {
        self.rows
            .iter()
            .filter(|(status, _)| which(**status))
            .map(|(_, count)| count)
            .sum()
    }

    /// Total rows.
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }

    /// `succeeded=3,declined=1`: the form stored on the batch.
    pub fn counts_text(&self) -> String {
        RefundStatus::ALL
            .iter()
            .filter(|status| self.count(**status) > 0)
            .map(|status| format!("{status}={}", self.count(*status)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Amounts for a status as `49.99 USD, 1200 JPY`.
    pub fn amounts_text(&self, status: RefundStatus) -> Option<String> {
        let parts: Vec<String> = self
            .amounts
            .iter()
            .filter(|((amount_status, _), _)| *amount_status == status)
            .map(|((_, currency), minor)| format!("{} {currency}", format_amount_grouped(*minor, *currency)))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}
