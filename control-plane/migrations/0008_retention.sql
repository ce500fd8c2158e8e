-- Retention: the expiry an uploader asked for (recomputations never pass
-- it), when bytes in the recovery store are reaped, the API request log,
-- and leases so that one control plane sweeps at a time.

-- The expiry the uploader asked for (a ttl), or for anonymous uploads the
-- one disclosed at upload. Rows from before: their current expiry, so that
-- no recomputation ever extends what was shown.
ALTER TABLE images ADD COLUMN requested_expires_at BIGINT;
UPDATE images SET requested_expires_at = expires_at;

-- Set when the bytes move to the recovery store; the sweep reaps them then.
ALTER TABLE images ADD COLUMN reap_at BIGINT;
UPDATE images SET reap_at = COALESCE(deleted_at, created_at) + 30 * 86400 WHERE bytes_in = 'recovery';
CREATE INDEX images_reap ON images(reap_at);

-- API-key calls, kept `retention.request_log_days` (abuse investigation).
-- The client address is kept here on purpose: the policy allows it for the
-- API (never for CDN traffic).
CREATE TABLE request_log (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,
    status      BIGINT NOT NULL,
    latency_ms  BIGINT NOT NULL,
    ip          TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX request_log_team ON request_log(team_id, at, id);
CREATE INDEX request_log_at ON request_log(at);

-- Named leases: who holds a background job, until when.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    held_until  BIGINT NOT NULL
);

-- Sessions are found by expiry by the sweep.
CREATE INDEX sessions_expiry ON sessions(expires_at);
CREATE INDEX sessions_hard_expiry ON sessions(hard_expires_at);
CREATE INDEX invitations_expiry ON invitations(expires_at);
