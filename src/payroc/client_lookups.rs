//! The client's reads: every refund of an order or a terminal over a window, every page followed
//! (for reconcile and the look-up before a first send), and one refund by id (for `--refresh`).
//! A read sends no refund, so no failure of one means anything may have reached Payroc.

use super::*;

impl PayrocClient {
    /// Lists every refund Payroc has for one order — or, without `order_id`, for the whole
    /// terminal — made between `date_from` and `date_to`
    /// (`GET /refunds?processingTerminalId&orderId&dateFrom&dateTo` or the bank-transfer list),
    /// following every page, for `reconcile` and the pre-send lookup. Only a complete listing is
    /// returned: a page that cannot be read, or paging that does not end, is an error, because
    /// "not in the list" is only evidence when the list is whole. Each page takes a permit of
    /// `limiter` when one is given, after any `Retry-After` pause.
    pub async fn find_refunds(
        &self,
        method: Method,
        terminal: &str,
        order_id: Option<&str>,
        window: (time::OffsetDateTime, time::OffsetDateTime),
        limiter: Option<&RequestLimiter>,
    ) -> Result<Vec<CreatedRefund>, SendResult> {
        // A terminal's listing may be long (a hundred refunds a page); one order's is not.
        let max_pages = if order_id.is_some() {
            MAX_LIST_PAGES
        } else {
            MAX_TERMINAL_LIST_PAGES
        };
        let url = self.refund_url(method);
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let date_from = window
            .0
            .to_offset(time::UtcOffset::UTC)
            .format(&format)
            .unwrap_or_default();
        let date_to = window
            .1
            .to_offset(time::UtcOffset::UTC)
            .format(&format)
            .unwrap_or_default();
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        for _page in 0..max_pages {
            let exchange = self
                .exchange(limiter, false, false, |authorization| {
                    let mut query = vec![("processingTerminalId", terminal)];
                    if let Some(order_id) = order_id {
                        query.push(("orderId", order_id));
                    }
                    query.extend([
                        ("dateFrom", date_from.as_str()),
                        ("dateTo", date_to.as_str()),
                        ("limit", "100"),
                    ]);
                    if let Some(after) = &after {
                        query.push(("after", after.as_str()));
                    }
                    self.http
                        .get(url.clone())
                        .header(AUTHORIZATION, authorization.clone())
                        .query(&query)
                })
                .await;
            let (status, bytes) = exchange.result?;
            let list: RefundList = lookup_answer(status, &bytes, "a refund list")?;
            let next = list.has_more.then(|| list.next_cursor()).flatten();
            let had_more = list.has_more;
            found.extend(list.data);
            match next {
                Some(cursor) if after.as_deref() != Some(cursor.as_str()) => after = Some(cursor),
                Some(_) | None if had_more => {
                    return Err(SendResult::GaveUp {
                        maybe_reached: false,
                        detail: "Payroc said more refunds exist for this order but gave no way to the next page".into(),
                        http_status: Some(status.as_u16()),
                    });
                }
                _ => {
                    // Payroc filters by order id; a refund of another order in the answer is
                    // not this order's, whatever else it says.
                    found.retain(|refund| {
                        refund
                            .order
                            .as_ref()
                            .and_then(|order| order.order_id.as_deref())
                            .is_none_or(|id| order_id.is_none_or(|wanted| id == wanted))
                    });
                    return Ok(found);
                }
            }
        }
        Err(SendResult::GaveUp {
            maybe_reached: false,
            detail: format!("Payroc lists more than {max_pages} pages of refunds here; settle it by hand"),
            http_status: None,
        })
    }

    /// Reads one refund as Payroc has it now (`GET /refunds/{refundId}` or
    /// `GET /bank-transfer-refunds/{refundId}`), for `reconcile --refresh`.
    pub async fn get_refund(&self, method: Method, refund_id: &str) -> Result<CreatedRefund, SendResult> {
        let url = format!("{}/{}", self.refund_url(method), encode_path_segment(refund_id));
        let exchange = self
            .exchange(None, false, false, |authorization| {
                self.http.get(&url).header(AUTHORIZATION, authorization.clone())
            })
            .await;
        let (status, bytes) = exchange.result?;
        lookup_answer(status, &bytes, "a refund")
    }
}

/// Reads a lookup's final answer: the body as `T`, or why there is none — the lookup was
/// refused, or its answer was not `what`. A lookup sends no refund, so neither failure means
/// anything may have reached Payroc.
fn lookup_answer<T: serde::de::DeserializeOwned>(
    status: StatusCode,
    bytes: &[u8],
    what: &str,
) -> Result<T, SendResult> {
    let failed = |detail: String| SendResult::GaveUp {
        maybe_reached: false,
        detail,
        http_status: Some(status.as_u16()),
    };
    if !status.is_success() {
        let problem: PayrocProblem = serde_json::from_slice(bytes).unwrap_or_default();
        return Err(failed(format!(
            "the lookup was refused: HTTP {}: {}",
            status.as_u16(),
            problem.describe(status)
        )));
    }
    serde_json::from_slice(bytes).map_err(|error| failed(format!("the lookup answer was not {what} ({error})")))
}

/// A refund id as one URL path segment (Payroc's are 10 letters and digits; anything else is
/// percent-encoded rather than trusted).
fn encode_path_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}
