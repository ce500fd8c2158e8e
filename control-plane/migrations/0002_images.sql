-- Images and the plan of each team.

ALTER TABLE teams ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';

CREATE TABLE images (
    -- The public 8-character id (also the key in the stores).
    id            TEXT PRIMARY KEY,
    -- NULL for anonymous uploads.
    team_id       TEXT REFERENCES teams(id) ON DELETE CASCADE,
    uploaded_by   TEXT REFERENCES users(id) ON DELETE SET NULL,
    source        TEXT NOT NULL,
    format        TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    width         BIGINT NOT NULL,
    height        BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    filename      TEXT,
    caption       TEXT,
    public        BIGINT NOT NULL,
    -- JSON objects of strings.
    labels        TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    -- processing: row written, stored bytes not yet published; ready; failed.
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    published_at  BIGINT,
    expires_at    BIGINT,
    deleted_at    BIGINT
);
CREATE INDEX images_team_created ON images(team_id, created_at, id);
CREATE INDEX images_expiry ON images(expires_at);
