-- Storage names: the first segment of the URLs of a team's images
-- (`/{storage}/{id}.{ext}`), random and stable per team. NULL only between
-- this migration and the control plane's next start, which names every
-- team created before it (see images::storage_names).
ALTER TABLE teams ADD COLUMN storage TEXT;
CREATE UNIQUE INDEX teams_storage ON teams(storage);

-- The storage an image's manifest names, copied from its team at upload.
-- NULL: anonymous, or published before storage names (until renamed).
ALTER TABLE images ADD COLUMN storage TEXT;
-- 1: the shard form `/{shard}/{id}.{ext}` serves too (the image had
-- URLs of that form before its team had a storage name).
ALTER TABLE images ADD COLUMN shard_url BIGINT NOT NULL DEFAULT 0;
CREATE INDEX images_unnamed ON images(storage, id);
