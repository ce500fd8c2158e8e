-- Accounts, sessions, teams, API keys and outbound email.
-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Ids are random
-- text, times are unix seconds (BIGINT), flags are BIGINT 0/1 (the one boolean form both
-- backends read back through sqlx's Any driver).

CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    personal    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    -- NULL for accounts created by the legacy POST /v1/keys until a password is set.
    password_hash      TEXT,
    email_verified_at  BIGINT,
    personal_team_id   TEXT NOT NULL REFERENCES teams(id),
    created_at         BIGINT NOT NULL
);

-- Append-only: one row per consent decision.
CREATE TABLE consents (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    recorded_at  BIGINT NOT NULL,
    source       TEXT NOT NULL,
    country      TEXT,
    marketing    BIGINT NOT NULL,
    gpc          BIGINT NOT NULL
);
CREATE INDEX consents_user ON consents(user_id, recorded_at);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    token_hash       TEXT NOT NULL UNIQUE,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    last_seen_at     BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    hard_expires_at  BIGINT NOT NULL,
    -- Kept only while the session lives (deleted with the row).
    ip               TEXT,
    user_agent       TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE email_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE memberships (
    team_id     TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);

CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    team_id      TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    invited_by   TEXT REFERENCES users(id) ON DELETE SET NULL,
    expires_at   BIGINT NOT NULL,
    accepted_at  BIGINT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    team_id        TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    created_by     TEXT REFERENCES users(id) ON DELETE SET NULL,
    name           TEXT NOT NULL,
    prefix         TEXT NOT NULL,
    key_hash       TEXT NOT NULL UNIQUE,
    can_read       BIGINT NOT NULL,
    can_write      BIGINT NOT NULL,
    -- Day granularity on purpose: unix seconds truncated to 00:00 UTC.
    created_day    BIGINT NOT NULL,
    last_used_day  BIGINT,
    revoked_at     BIGINT
);
CREATE INDEX api_keys_team ON api_keys(team_id);

-- Mail waiting to be delivered; a row is deleted once sent.
CREATE TABLE outbound_emails (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    leased_until     BIGINT
);
CREATE INDEX outbound_emails_due ON outbound_emails(next_attempt_at);
