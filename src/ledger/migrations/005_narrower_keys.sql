-- Schema version 5: the keys table without the index the hot path does not need.
--
-- It kept a UNIQUE index on idempotency_key. The keys are random UUIDs, so in a long-lived
-- ledger every new refund wrote a random page of that index (a 4 KiB WAL frame per row at
-- 200,000 rows). A key is derived from the refund's identity and generation, which are unique
-- here (refunds.identity is UNIQUE and (refund_id, generation) is the primary key), so the
-- index only re-checked SHA-256; nothing ever looked a key up through it. The table is now
-- clustered on its primary key (WITHOUT ROWID): one b-tree, appended to in refund order.
CREATE TABLE keys_by_refund (
    refund_id        INTEGER NOT NULL REFERENCES refunds (id),
    generation       INTEGER NOT NULL,
    idempotency_key  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (refund_id, generation)
) WITHOUT ROWID;
INSERT INTO keys_by_refund (refund_id, generation, idempotency_key, created_at)
    SELECT refund_id, generation, idempotency_key, created_at FROM keys;
DROP TABLE keys;
ALTER TABLE keys_by_refund RENAME TO keys;
