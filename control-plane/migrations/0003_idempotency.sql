-- Idempotency-Key records: one per (scope, key), kept 24 hours.
CREATE TABLE idempotency_keys (
    -- The team for authenticated calls, 'anonymous' otherwise.
    scope            TEXT NOT NULL,
    idem_key         TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    -- in_progress | done
    state            TEXT NOT NULL,
    response_status  BIGINT,
    response_body    TEXT,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
