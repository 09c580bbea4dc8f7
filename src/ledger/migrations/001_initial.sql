-- Schema version 1 of the refund-batch ledger. Never edit a released migration: add a new one.

-- One row per command run over one input file.
CREATE TABLE batches (
    id            INTEGER PRIMARY KEY,
    input_path    TEXT NOT NULL,
    input_sha256  TEXT NOT NULL,
    environment   TEXT NOT NULL,
    command       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    rows_total    INTEGER,
    rows_invalid  INTEGER,
    exit_code     INTEGER,
    counts        TEXT
);
CREATE INDEX batches_by_input ON batches (input_sha256);

-- One row per refund identity (environment, namespace, method, terminal, order id).
CREATE TABLE refunds (
    id                      INTEGER PRIMARY KEY,
    identity                TEXT NOT NULL UNIQUE,
    environment             TEXT NOT NULL,
    method                  TEXT NOT NULL,
    processing_terminal_id  TEXT NOT NULL,
    order_id                TEXT NOT NULL,
    generation              INTEGER NOT NULL,
    idempotency_key         TEXT NOT NULL,
    state                   TEXT NOT NULL,
    fingerprint             TEXT NOT NULL,
    amount_minor            INTEGER NOT NULL,
    currency                TEXT NOT NULL,
    payee_masked            TEXT NOT NULL,
    attempts                INTEGER NOT NULL DEFAULT 0,
    http_status             INTEGER,
    refund_id               TEXT,
    payroc_status           TEXT,
    response_code           TEXT,
    response_message        TEXT,
    problem_type            TEXT,
    problem_detail          TEXT,
    first_sent_at           TEXT,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    batch_id                INTEGER REFERENCES batches (id),
    input_row               INTEGER
);

-- Every Idempotency-Key ever handed out, so the ledger stays the authority past Payroc's 7 days.
CREATE TABLE keys (
    refund_id        INTEGER NOT NULL REFERENCES refunds (id),
    generation       INTEGER NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (refund_id, generation)
);

-- The audit trail: one row per send of a refund (its HTTP retries are counted on the refund).
CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    refund_id        INTEGER NOT NULL REFERENCES refunds (id),
    batch_id         INTEGER REFERENCES batches (id),
    generation       INTEGER NOT NULL,
    idempotency_key  TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
    http_status      INTEGER,
    outcome          TEXT,
    detail           TEXT
);
CREATE INDEX attempts_by_refund ON attempts (refund_id);
