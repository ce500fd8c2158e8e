-- Edge sync: the sequenced log of visibility changes, operators, edges.

-- One row: the last sequence number handed out. Bumping it takes the row's
-- lock until the transaction ends, so changes commit in sequence order and
-- an edge that has seen N can never later miss a change below N.
CREATE TABLE sync_head (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL);
INSERT INTO sync_head (id, seq) VALUES (1, 0);

-- Append-only: what each image id is at the edge from `seq` on.
CREATE TABLE visibility_changes (
    seq         BIGINT PRIMARY KEY,
    image_id    TEXT NOT NULL,
    -- takedown | hide | warn | restore
    action      TEXT NOT NULL,
    -- takedown reason code
    reason      TEXT,
    -- why (operator note, or deleted / private / expired)
    note        TEXT,
    -- operator id, or user / key / system
    actor       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX visibility_changes_image ON visibility_changes(image_id, seq);

-- Operator decisions on an image (restore clears both).
ALTER TABLE images ADD COLUMN takedown_reason TEXT;
ALTER TABLE images ADD COLUMN warned BIGINT NOT NULL DEFAULT 0;

-- Operators authenticate with their own tokens, never a user's API key.
CREATE TABLE operators (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- The edges that have spoken to us, and each advance of their applied seq.
CREATE TABLE edges (
    name         TEXT PRIMARY KEY,
    applied_seq  BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE TABLE edge_acks (
    edge      TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    acked_at  BIGINT NOT NULL,
    PRIMARY KEY (edge, seq)
);
