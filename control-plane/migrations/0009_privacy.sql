-- People's rights over their data: reversible account deletion, exports,
-- email changes, restriction and objection, rights requests by email, and
-- a record of erasures that names nobody.

-- Deletion: requested at, erased at the next sweep after `deletion_due_at`.
-- While requested the account is locked (no sign-in, its keys refused).
ALTER TABLE users ADD COLUMN deletion_requested_at BIGINT;
ALTER TABLE users ADD COLUMN deletion_due_at BIGINT;
CREATE INDEX users_deletion_due ON users(deletion_due_at);
-- Restriction of processing and objection to it (GDPR Art. 18, 21).
ALTER TABLE users ADD COLUMN restricted_at BIGINT;
ALTER TABLE users ADD COLUMN objected_at BIGINT;
-- When the person confirmed being at least 16 (sign-up).
ALTER TABLE users ADD COLUMN age_confirmed_at BIGINT;
-- An address being changed to, until the link sent to it is used.
ALTER TABLE users ADD COLUMN pending_email TEXT;

-- Data exports: built by a leased job into the staging store, downloadable
-- by their owner until `expires_at`, then deleted by the sweep.
CREATE TABLE exports (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- queued | building | ready | failed
    state         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    leased_until  BIGINT,
    attempts      BIGINT NOT NULL,
    ready_at      BIGINT,
    expires_at    BIGINT,
    bytes         BIGINT
);
CREATE INDEX exports_state ON exports(state, created_at);
CREATE INDEX exports_user ON exports(user_id);

-- What an erasure did, without saying whose account it was.
CREATE TABLE erasures (
    id                TEXT PRIMARY KEY,
    at                BIGINT NOT NULL,
    -- request (the person asked, after the grace period) | child (operator)
    reason            TEXT NOT NULL,
    operator_id       TEXT,
    note              TEXT,
    images            BIGINT NOT NULL,
    teams_dissolved   BIGINT NOT NULL,
    teams_handed_over BIGINT NOT NULL
);

-- Rights requests received by email, tracked to their legal deadline.
CREATE TABLE rights_requests (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    -- access | erasure | rectification | restriction | objection | portability | opt_out | other
    kind          TEXT NOT NULL,
    -- gdpr (30 days) | ccpa (45 days)
    jurisdiction  TEXT NOT NULL,
    received_at   BIGINT NOT NULL,
    due_at        BIGINT NOT NULL,
    -- open | done | refused
    state         TEXT NOT NULL,
    note          TEXT,
    closed_at     BIGINT
);
CREATE INDEX rights_requests_due ON rights_requests(state, due_at);
