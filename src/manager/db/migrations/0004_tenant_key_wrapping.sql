-- Version 4, "tenant key wrapping": tenant keys are stored wrapped under the manager's
-- key-encryption key (config encryption.key; key-wrap.ts): nonce, ciphertext and tag, 60 bytes.
-- Rows written before hold the plain 32-byte key with wrapped = false; the manager wraps them
-- at its next start with a key-encryption key, and refuses to start without one while any
-- tenant key exists (tenant-keys.ts prepare).
-- Released: never edited; a change goes in a new version (see ../migrations.ts).
ALTER TABLE tenant_keys DROP CONSTRAINT tenant_keys_key_check;
ALTER TABLE tenant_keys ADD COLUMN wrapped boolean NOT NULL DEFAULT false;
ALTER TABLE tenant_keys ADD CONSTRAINT tenant_keys_key_length CHECK (length(key) = CASE WHEN wrapped THEN 60 ELSE 32 END);
