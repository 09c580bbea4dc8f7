-- Schema version 6: an order is one refund, and the ledger itself refuses a second.
--
-- From this version a refund's identity (and its Idempotency-Key) is its order: environment,
-- terminal and order id, whatever the method or key namespace, so one record stands for one order
-- and every key generation of it. Records made earlier keep their identities and keys; an order
-- may still have several of those (one per method or namespace), which the code reads as one.

-- Orders are looked up by their id in any letter case (ids that differ only by case are one order
-- unless the user says otherwise); the exact id is compared after the index narrows it down.
DROP INDEX refunds_by_order;
CREATE INDEX refunds_by_order ON refunds (environment, processing_terminal_id, lower(order_id));

-- The last line of defence against a double refund: whatever path the code takes, a refund
-- record may not start a new key (a new record, or the next generation of one) while another
-- record of the same order is not a definite failure. Definite failures refunded nothing:
-- declined, returned, or rejected before any request of it may have reached Payroc.
CREATE TRIGGER one_live_refund_per_order_on_insert
BEFORE INSERT ON refunds
WHEN EXISTS (
    SELECT 1 FROM refunds AS other
    WHERE other.environment = NEW.environment
      AND other.processing_terminal_id = NEW.processing_terminal_id
      AND lower(other.order_id) = lower(NEW.order_id) AND other.order_id = NEW.order_id
      AND NOT (other.state IN ('declined', 'returned') OR (other.state = 'rejected' AND other.may_have_reached = 0))
)
BEGIN
    SELECT RAISE(ABORT, 'refund-batch ledger: this order already has a refund that is not a definite failure; one order is one refund');
END;

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
          AND other.processing_terminal_id = OLD.processing_terminal_id
          AND lower(other.order_id) = lower(OLD.order_id) AND other.order_id = OLD.order_id
          AND NOT (other.state IN ('declined', 'returned') OR (other.state = 'rejected' AND other.may_have_reached = 0))
    )
)
BEGIN
    SELECT RAISE(ABORT, 'refund-batch ledger: a new key for an order whose refund may exist; one order is one refund');
END;

-- Since when the ledger has recorded sends in each environment: a ledger vouches for what Payroc
-- holds only over the time it has existed there (rows it never saw are looked up before their
-- first send until then). Filled from the audit trail for ledgers that sent before this version.
INSERT OR IGNORE INTO meta (name, value)
    SELECT 'first_send_at:' || r.environment, min(a.started_at)
    FROM attempts AS a JOIN refunds AS r ON r.id = a.refund_id
    GROUP BY r.environment;
