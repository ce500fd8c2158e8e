-- Identical bytes within a team are stored once: an image may show the
-- object of an earlier image. NULL = its own objects/{id}.
ALTER TABLE images ADD COLUMN object_key TEXT;
CREATE INDEX images_team_sha ON images(team_id, sha256);
