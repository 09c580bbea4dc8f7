-- Schema version 2: remember which Payroc refund each attempt produced, so `reconcile` can tell
-- an earlier generation's (declined) refund from the one it is looking for.
ALTER TABLE attempts ADD COLUMN payroc_refund_id TEXT;
