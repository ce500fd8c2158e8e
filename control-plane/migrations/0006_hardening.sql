-- Keys created while the account's address was unproven: revoked if the
-- address is then proven by a reset or an invitation (account
-- pre-hijacking), kept if by the verification link.
ALTER TABLE api_keys ADD COLUMN unproven BIGINT NOT NULL DEFAULT 0;
CREATE INDEX api_keys_created_by ON api_keys(created_by);

-- Invitations can be revoked before they are accepted.
ALTER TABLE invitations ADD COLUMN revoked_at BIGINT;

-- Sweeps find spent tokens and stale idempotency claims by time.
CREATE INDEX email_tokens_expiry ON email_tokens(expires_at);
CREATE INDEX email_tokens_user ON email_tokens(user_id, purpose);
CREATE INDEX idempotency_created ON idempotency_keys(created_at);

-- Store work an image change still owes after its commit (withdraw or
-- write a manifest, move to recovery). Set in the change's transaction,
-- cleared when the work is done; the sweep retries what stayed set, so a
-- failed store step is redone without re-checking every deleted image.
ALTER TABLE images ADD COLUMN store_pending BIGINT NOT NULL DEFAULT 0;
UPDATE images SET store_pending = 1 WHERE deleted_at IS NOT NULL AND status = 'ready';
CREATE INDEX images_store_pending ON images(store_pending);
