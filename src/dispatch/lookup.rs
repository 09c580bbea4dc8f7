//! The look-up before a first send: what Payroc already holds for an order this ledger cannot
//! vouch for (see [`crate::ledger::Ledger::first_send_at`]).
//!
//! A row marked for a look-up is sent only once both of Payroc's refund lists (card and bank —
//! an order is one refund whichever way it went) were read in full over the window and showed no
//! refund of the order, in any letter case of its id, that is not a definite failure. Payroc's
//! `orderId` filter is exact, so the terminal's whole lists over the window are read, once, every
//! page, and serve all its rows: a long first run costs little more than its sends. (With
//! `--allow-case-variants` the first few rows of a terminal are looked up order by order, two
//! requests each, and the listing only from then on.) The listing is shared by the rows' look-ups as one future: whichever
//! look-up polls it first reads it, and the others wait for the same answer.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

use crate::ledger::{BatchId, Ledger, LedgerError, PayrocAnswer, RefundRecord, RefundUpdate};
use crate::payroc::{CreatedRefund, PayrocClient, RequestLimiter, SendResult};
use crate::refund::{Method, RefundStatus, RowNote};

/// With `--allow-case-variants`, how many rows of a terminal are looked up order by order before
/// its whole listing is read: a run that looks up only a row or two (a retry, a resumed run)
/// never reads a terminal's entire history, and a run that looks up many reads it once. Without
/// it the listing is always read (see [`Lookups::of_order`]).
const ORDER_BY_ORDER: u32 = 3;

/// One method's list of a terminal's refunds over the window, by order id in lower case (ids
/// are ASCII), or why it could not be read. Indexed once, so each row's look-up is one probe,
/// not a pass over the terminal's whole history.
type MethodListing = Result<Arc<HashMap<String, Vec<CreatedRefund>>>, SendResult>;

/// A terminal's card and bank listings, read once and shared.
type TerminalListing = Shared<BoxFuture<'static, Arc<[(Method, MethodListing); 2]>>>;

/// The look-ups of one run: how many each terminal had, and its listing once it has one.
pub(super) struct Lookups {
    client: Arc<PayrocClient>,
    limiter: Arc<RequestLimiter>,
    days: u32,
    allow_case_variants: bool,
    per_terminal: HashMap<String, (u32, Option<TerminalListing>)>,
}

impl Lookups {
    pub(super) fn new(
        client: Arc<PayrocClient>,
        limiter: Arc<RequestLimiter>,
        days: u32,
        allow_case_variants: bool,
    ) -> Lookups {
        Lookups {
            client,
            limiter,
            days,
            allow_case_variants,
            per_terminal: HashMap::new(),
        }
    }

    /// The look-up of one order, sent by `method`, as a future owning all it needs: every
    /// refund Payroc lists for the order (any letter case of its id, unless case variants are
    /// allowed), with the method of the list it came from.
    pub(super) fn of_order(
        &mut self,
        terminal: &str,
        order_id: &str,
        method: Method,
    ) -> BoxFuture<'static, Result<Vec<(Method, CreatedRefund)>, SendResult>> {
        let window = window(self.days);
        let (count, listing) = self.per_terminal.entry(terminal.to_owned()).or_insert((0, None));
        *count += 1;
        // Payroc's `orderId` filter matches the id exactly, so only the terminal's listing shows
        // an order refunded under an id that differs by letter case: while those are one order,
        // every look-up reads the listing.
        if listing.is_none() && (!self.allow_case_variants || *count > ORDER_BY_ORDER) {
            let client = Arc::clone(&self.client);
            let limiter = Arc::clone(&self.limiter);
            let terminal = terminal.to_owned();
            let read = async move {
                let card = client
                    .find_refunds(Method::Card, &terminal, None, window, Some(&limiter))
                    .await
                    .map(by_order);
                let bank = client
                    .find_refunds(Method::Bank, &terminal, None, window, Some(&limiter))
                    .await
                    .map(by_order);
                Arc::new([(Method::Card, card), (Method::Bank, bank)])
            };
            *listing = Some(read.boxed().shared());
        }
        let wanted = order_id.to_owned();
        let allow_case_variants = self.allow_case_variants;
        match listing.clone() {
            Some(listing) => async move {
                let lists = listing.await;
                let mut all = Vec::new();
                for (list_method, listed) in lists.iter() {
                    match listed {
                        Ok(by_order) => all.extend(
                            by_order
                                .get(&wanted.to_ascii_lowercase())
                                .into_iter()
                                .flatten()
                                .filter(|refund| is_of_order(refund, &wanted, allow_case_variants))
                                .map(|refund| (*list_method, refund.clone())),
                        ),
                        Err(failure) if *list_method != method && refused_by_the_terminal(failure) => {}
                        Err(failure) => return Err(failure.clone()),
                    }
                }
                Ok(all)
            }
            .boxed(),
            None => {
                let client = Arc::clone(&self.client);
                let limiter = Arc::clone(&self.limiter);
                let terminal = terminal.to_owned();
                async move { order_in_both_lists(&client, &terminal, &wanted, method, window, Some(&limiter)).await }
                    .boxed()
            }
        }
    }
}

/// Every refund Payroc lists for one order over `window`, in the card and the bank list (an
/// order is one refund whichever way it went), with the list each came from. The list of
/// `method` — the way the row's refund goes — must be read in full; the other may be refused
/// for the terminal (one without bank transfers), which counts as empty. Payroc matches the
/// order id exactly. Used by the look-up before a first send and by `reconcile` alike.
pub(super) async fn order_in_both_lists(
    client: &PayrocClient,
    terminal: &str,
    order_id: &str,
    method: Method,
    window: (time::OffsetDateTime, time::OffsetDateTime),
    limiter: Option<&RequestLimiter>,
) -> Result<Vec<(Method, CreatedRefund)>, SendResult> {
    let mut all = Vec::new();
    for list_method in [method, method.other()] {
        match client
            .find_refunds(list_method, terminal, Some(order_id), window, limiter)
            .await
        {
            Ok(found) => all.extend(found.into_iter().map(|refund| (list_method, refund))),
            Err(failure) if list_method != method && refused_by_the_terminal(&failure) => {}
            Err(failure) => return Err(failure),
        }
    }
    Ok(all)
}

/// Refunds Payroc lists on the terminal over `window` for an order id that differs from
/// `order_id` only by letter case and that refunded something (not declined or returned): the
/// same order, to a reader, under an id Payroc's exact `orderId` filter does not match. Reads the
/// terminal's whole lists, so only for a decision a person makes (`--confirm-not-created`).
pub(super) async fn case_variants_at_payroc(
    client: &PayrocClient,
    terminal: &str,
    order_id: &str,
    method: Method,
    window: (time::OffsetDateTime, time::OffsetDateTime),
) -> Result<Vec<(Method, CreatedRefund)>, SendResult> {
    let mut variants = Vec::new();
    for list_method in [method, method.other()] {
        match client.find_refunds(list_method, terminal, None, window, None).await {
            Ok(found) => variants.extend(
                found
                    .into_iter()
                    .filter(|refund| {
                        is_of_order(refund, order_id, false)
                            && !is_of_order(refund, order_id, true)
                            && refunded_something(list_method, refund)
                    })
                    .map(|refund| (list_method, refund)),
            ),
            Err(failure) if list_method != method && refused_by_the_terminal(&failure) => {}
            Err(failure) => return Err(failure),
        }
    }
    Ok(variants)
}

/// Whether a refund Payroc listed (from the list of `listed_by`) refunded something: any that
/// is not declined or returned. The look-up, reconcile and the case-variant check read it alike.
pub(super) fn refunded_something(listed_by: Method, refund: &CreatedRefund) -> bool {
    !matches!(
        crate::dispatch::outcome::of_refund(listed_by, refund).state,
        Some(RefundStatus::Declined | RefundStatus::Returned)
    )
}

/// Whether a refund Payroc listed is the one `record` stands for: the same method, order id,
/// amount and currency. The one matcher of "this refund is ours" that the look-up before a
/// first send and reconcile share; anything else listed for the order is another refund.
pub(super) fn is_the_records_refund(listed_by: Method, refund: &CreatedRefund, record: &RefundRecord) -> bool {
    listed_by == record.method
        && refund.order.as_ref().is_some_and(|order| {
            order.amount == Some(record.amount_minor)
                && order.currency.as_deref() == Some(record.currency.code())
                && order.order_id.as_deref() == Some(&record.order_id)
        })
}

/// The window a look-up reads: the last `days` days and one ahead, for clocks that disagree, in
/// Payroc's time (see [`crate::clock`]).
fn window(days: u32) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = crate::clock::now();
    (
        now - time::Duration::days(i64::from(days)),
        now + time::Duration::days(1),
    )
}

/// A terminal's listed refunds by their order id in lower case; a refund without an order id is
/// no order's.
fn by_order(refunds: Vec<CreatedRefund>) -> Arc<HashMap<String, Vec<CreatedRefund>>> {
    let mut by_order: HashMap<String, Vec<CreatedRefund>> = HashMap::new();
    for refund in refunds {
        if let Some(id) = refund.order.as_ref().and_then(|order| order.order_id.as_deref()) {
            by_order.entry(id.to_ascii_lowercase()).or_default().push(refund);
        }
    }
    Arc::new(by_order)
}

/// Whether a listed refund is of order `wanted` (in any letter case unless case variants are
/// different orders).
fn is_of_order(refund: &CreatedRefund, wanted: &str, allow_case_variants: bool) -> bool {
    refund
        .order
        .as_ref()
        .and_then(|order| order.order_id.as_deref())
        .is_some_and(|id| {
            if allow_case_variants {
                id == wanted
            } else {
                id.eq_ignore_ascii_case(wanted)
            }
        })
}

/// Whether a list was refused for the terminal (a 4xx: a terminal without bank transfers cannot
/// list them). Only the other method's list may be refused: the row's own must be read in full.
fn refused_by_the_terminal(failure: &SendResult) -> bool {
    matches!(failure, SendResult::GaveUp { http_status: Some(status), .. } if (400..500).contains(status))
}

/// What a lookup before the first send came to.
pub(super) enum LookupVerdict {
    /// Payroc has no refund for the order that counts (none, or only declined ones): send it.
    Clear,
    /// Payroc already has it: the row took that outcome (or `conflict`) and is not sent.
    Settled(RefundStatus),
    /// The lookup failed: the row stays `pending`, marked for a lookup, and is not sent.
    Failed(RowNote, Box<SendResult>),
}

/// Records what a lookup before the first send found for `record`, sent by `method`.
pub(super) fn settle_lookup(
    ledger: &mut Ledger,
    record: &RefundRecord,
    method: Method,
    found: Result<Vec<(Method, CreatedRefund)>, SendResult>,
    batch: BatchId,
) -> Result<LookupVerdict, LedgerError> {
    let found = match found {
        Ok(found) => found,
        Err(failure) => {
            let detail = failure.detail();
            let note = RowNote {
                status: RefundStatus::Pending,
                error: format!(
                    "not sent: this ledger is new, and the lookup of the order at Payroc before its first send failed ({detail}). Run again"
                ),
            };
            return Ok(LookupVerdict::Failed(note, Box::new(failure)));
        }
    };
    // A declined or returned refund refunded nothing: it does not stand in the way.
    let live: Vec<(Method, CreatedRefund, RefundUpdate)> = found
        .into_iter()
        .filter(|(listed_by, refund)| refunded_something(*listed_by, refund))
        .map(|(listed_by, refund)| {
            let outcome = crate::dispatch::outcome::of_refund(listed_by, &refund);
            (listed_by, refund, outcome)
        })
        .collect();
    let outcome = match live.as_slice() {
        [] => return Ok(LookupVerdict::Clear),
        [(found_method, refund, outcome)]
            if *found_method == method && is_the_records_refund(*found_method, refund, record) =>
        {
            let mut outcome = outcome.clone();
            outcome.answer.http_status = Some(200);
            outcome.answer.problem_detail = Some(format!(
                "found at Payroc before sending ({}): this order was already refunded, so it was not sent again",
                describe_found(*found_method, refund)
            ));
            outcome
        }
        several => RefundUpdate {
            state: Some(RefundStatus::Conflict),
            answer: PayrocAnswer {
                http_status: Some(200),
                problem_detail: Some(format!(
                    "Payroc already has {} for this order ({}); one order is one refund, so this row was not sent. A different refund needs a different order_id",
                    if several.len() == 1 { "a refund" } else { "refunds" },
                    several
                        .iter()
                        .map(|(method, refund, _)| describe_found(*method, refund))
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
                ..PayrocAnswer::default()
            },
            ..RefundUpdate::default()
        },
    };
    ledger.record_reconciliation(record.id, batch, &outcome)?;
    Ok(LookupVerdict::Settled(outcome.state.unwrap_or(RefundStatus::Unknown)))
}

/// `CD3HN88U9F, card, 4999 USD minor units, 2026-11-20`: a refund Payroc listed, in words.
pub(super) fn describe_found(method: Method, refund: &CreatedRefund) -> String {
    let order = refund.order.clone().unwrap_or_default();
    format!(
        "{}, {}, {} {} minor units, made {}",
        refund.refund_id.as_deref().unwrap_or("no id"),
        method.as_str(),
        order.amount.map_or_else(|| "?".to_owned(), |amount| amount.to_string()),
        order.currency.as_deref().unwrap_or("?"),
        order.date_time.as_deref().unwrap_or("at an unknown time")
    )
}
