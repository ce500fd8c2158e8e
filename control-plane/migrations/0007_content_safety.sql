-- Content safety: classification before publishing, a hash blocklist,
-- operator review with an append-only log, abuse reports and DMCA notices.

-- Where an image's bytes are: public | staging (awaiting classification or
-- review) | recovery (deleted, taken down, removed).
ALTER TABLE images ADD COLUMN bytes_in TEXT NOT NULL DEFAULT 'public';
UPDATE images SET bytes_in = 'recovery' WHERE deleted_at IS NOT NULL AND store_pending = 0;
-- PDQ perceptual hash (64 hex), nudity verdict (NULL = unknown), and the
-- combined classification: clean | restricted:{category} | prohibited:{category}.
ALTER TABLE images ADD COLUMN pdq TEXT;
ALTER TABLE images ADD COLUMN nsfw BIGINT;
ALTER TABLE images ADD COLUMN classification TEXT;
CREATE INDEX images_sha256 ON images(sha256);

-- Hashes no upload may match, on any team or surface.
CREATE TABLE blocklist (
    id         TEXT PRIMARY KEY,
    -- sha256 | pdq
    kind       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    category   TEXT NOT NULL,
    -- takedown:{image id} | import:{file} | operator:{id} | classifier:{name}
    source     TEXT NOT NULL,
    added_at   BIGINT NOT NULL,
    UNIQUE (kind, hash)
);

-- Uploads refused for matching the blocklist, for operators (no address).
CREATE TABLE blocklist_matches (
    id          TEXT PRIMARY KEY,
    entry_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    distance    BIGINT NOT NULL,
    category    TEXT NOT NULL,
    surface     TEXT NOT NULL,
    team_id     TEXT,
    matched_at  BIGINT NOT NULL
);

-- What each classifier said about an image.
CREATE TABLE classifications (
    image_id    TEXT NOT NULL,
    classifier  TEXT NOT NULL,
    -- clean | restricted | prohibited | error
    verdict     TEXT NOT NULL,
    category    TEXT,
    score       DOUBLE PRECISION,
    detail      TEXT,
    at          BIGINT NOT NULL,
    PRIMARY KEY (image_id, classifier)
);

-- Uploads waiting for a slow classifier (the HTTP hook), leased by one
-- control plane at a time.
CREATE TABLE classification_jobs (
    image_id         TEXT PRIMARY KEY,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    leased_until     BIGINT,
    created_at       BIGINT NOT NULL
);

-- Operator review: what waits for a decision (held uploads, reports,
-- DMCA notices), oldest first.
CREATE TABLE review_items (
    id           TEXT PRIMARY KEY,
    image_id     TEXT NOT NULL,
    -- classifier | report | dmca
    source       TEXT NOT NULL,
    category     TEXT NOT NULL,
    source_id    TEXT,
    created_at   BIGINT NOT NULL,
    resolved_at  BIGINT,
    resolution   TEXT
);
CREATE INDEX review_items_open ON review_items(resolved_at, created_at);

-- Every view and decision of an operator: appended, never changed.
CREATE TABLE review_log (
    id           TEXT PRIMARY KEY,
    at           BIGINT NOT NULL,
    operator_id  TEXT NOT NULL,
    image_id     TEXT NOT NULL,
    item_id      TEXT,
    -- view | approve | restrict | remove | takedown | restore | reject
    action       TEXT NOT NULL,
    before_state TEXT,
    after_state  TEXT,
    reason       TEXT
);

-- Abuse reports from anyone.
CREATE TABLE reports (
    id             TEXT PRIMARY KEY,
    image_id       TEXT NOT NULL,
    reason         TEXT NOT NULL,
    details        TEXT,
    contact_email  TEXT,
    created_at     BIGINT NOT NULL
);

-- DMCA notices and counter-notices.
CREATE TABLE dmca_notices (
    id                  TEXT PRIMARY KEY,
    image_id            TEXT NOT NULL,
    claimant_name       TEXT NOT NULL,
    claimant_email      TEXT NOT NULL,
    claimant_address    TEXT NOT NULL,
    claimant_phone      TEXT,
    work                TEXT NOT NULL,
    signature           TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    -- received | taken_down | countered | restored | court_action | rejected
    state               TEXT NOT NULL,
    uploader_id         TEXT,
    taken_down_at       BIGINT,
    counter_name        TEXT,
    counter_address     TEXT,
    counter_statement   TEXT,
    counter_signature   TEXT,
    countered_at        BIGINT,
    restore_after       BIGINT,
    counter_token_hash  TEXT
);
CREATE INDEX dmca_state ON dmca_notices(state, restore_after);

-- Copyright strikes against an uploader (repeat-infringer policy).
CREATE TABLE strikes (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    notice_id  TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX strikes_user ON strikes(user_id, at);

-- Upload rights lost (repeat infringer), with when.
ALTER TABLE users ADD COLUMN uploads_suspended_at BIGINT;
