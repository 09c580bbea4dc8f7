-- Schema version 7: orders are looked up by terminal and order id in any (ASCII) letter case.
--
-- Ids are plain ASCII, and two that differ only by letter case are one order unless the user
-- says otherwise; the terminal's case is folded as well as the order id's, as the file check
-- folds both, so that `TERM-A` and `term-a` with one order id cannot be two refunds either.
DROP INDEX refunds_by_order;
CREATE INDEX refunds_by_order ON refunds (environment, lower(processing_terminal_id), lower(order_id));
