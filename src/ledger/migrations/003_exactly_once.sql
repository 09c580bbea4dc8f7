-- Schema version 3: what closes the remaining paths to a double refund.

-- Whether any request of the current key generation may have reached Payroc (a request that
-- timed out, was cut off, answered 5xx, or a `sending` mark left by a crash). Once set it stays
-- set until the next generation: a later refusal of a re-send proves nothing about the first.
ALTER TABLE refunds ADD COLUMN may_have_reached INTEGER NOT NULL DEFAULT 0;
-- A ledger written by an earlier version: a row it left `sending` or `unknown` may have reached.
UPDATE refunds SET may_have_reached = 1 WHERE state IN ('sending', 'unknown');

-- When a person confirmed (`reconcile --confirm-not-created`) that Payroc has no refund for the
-- order, which alone lets a row first sent more than six days ago move to a new key.
ALTER TABLE refunds ADD COLUMN confirmed_not_created_at TEXT;

-- The row must be looked up at Payroc before its first send (it was first seen by a new ledger,
-- which cannot know what an earlier ledger sent); cleared when the lookup found nothing.
ALTER TABLE refunds ADD COLUMN needs_precheck INTEGER NOT NULL DEFAULT 0;

-- An order is one refund whatever the method or key namespace: rows are compared by this.
CREATE INDEX refunds_by_order ON refunds (environment, processing_terminal_id, order_id);

-- Facts about the ledger itself, e.g. the file whose run created it (its rows, and the rows of
-- any resumed run of that file, are looked up at Payroc before their first send).
CREATE TABLE meta (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
