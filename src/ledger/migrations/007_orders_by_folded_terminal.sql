-- Schema version 7: orders are looked up by terminal and order id in any (ASCII) letter case.
--
-- Ids are plain ASCII, and two that differ only by letter case are one order unless the user
-- says otherwise; the terminal's case is folded as well as the order id's, as the file check
-- folds both, so that `TERM-A` and `term-a` with one order id cannot be two refunds either.
DROP INDEX refunds_by_order;
CREATE INDEX refunds_by_order ON refunds (environment, lower(processing_terminal_id), lower(order_id));

-- The triggers of version 6 compared the terminal exactly, which this index cannot serve: each
-- new refund would read every refund of its environment. They compare through the index now
-- (the folded terminal and order id), and then exactly, as before; the unary `+` keeps SQLite's
-- planner from choosing the exact comparisons over the index, which it otherwise does.
DROP TRIGGER one_live_refund_per_order_on_insert;
CREATE TRIGGER one_live_refund_per_order_on_insert
BEFORE INSERT ON refunds
WHEN EXISTS (
    SELECT 1 FROM refunds AS other
    WHERE other.environment = NEW.environment
      AND lower(other.processing_terminal_id) = lower(NEW.processing_terminal_id)
      AND lower(other.order_id) = lower(NEW.order_id)
      AND +other.processing_terminal_id = NEW.processing_terminal_id
      AND +other.order_id = NEW.order_id
      AND NOT (other.state IN ('declined', 'returned') OR (other.state = 'rejected' AND other.may_have_reached = 0))
)
BEGIN
    SELECT RAISE(ABORT, 'refund-batch ledger: this order already has a refund that is not a definite failure; one order is one refund');
END;

DROP TRIGGER one_live_refund_per_order_on_new_key;
CREATE TRIGGER one_live_refund_per_order_on_new_key
BEFORE UPDATE OF generation ON refunds
WHEN NEW.generation <> OLD.generation AND (
    NOT (
        OLD.state IN ('declined', 'returned')
        OR (OLD.state = 'rejected' AND OLD.may_have_reached = 0)
        -- A person's confirmation that nothing was created, recorded by this very update.
        OR (NEW.confirmed_not_created_at IS NOT NULL AND NEW.confirmed_not_created_at IS NOT OLD.confirmed_not_created_at)
    )
    OR EXISTS (
        SELECT 1 FROM refunds AS other
        WHERE other.id <> OLD.id
          AND other.environment = OLD.environment
          AND lower(other.processing_terminal_id) = lower(OLD.processing_terminal_id)
          AND lower(other.order_id) = lower(OLD.order_id)
          AND +other.processing_terminal_id = OLD.processing_terminal_id
          AND +other.order_id = OLD.order_id
          AND NOT (other.state IN ('declined', 'returned') OR (other.state = 'rejected' AND other.may_have_reached = 0))
    )
)
BEGIN
    SELECT RAISE(ABORT, 'refund-batch ledger: a new key for an order whose refund may exist; one order is one refund');
END;
