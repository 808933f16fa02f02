-- The public keys that verify feedback tokens (Ed25519), one per API key. The signing key is
-- derived from the API key and never stored: a reader of this table, or of `api_keys`, cannot
-- sign a token. A key created before this table registers its public key the first time it
-- authenticates a request (the collector then sees the key itself). Revocation stays in
-- `api_keys`.
CREATE TABLE IF NOT EXISTS token_keys
(
    project_id             LowCardinality(String),
    key_id                 String,
    public_key             String,
    registered_at          DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(registered_at)
ORDER BY (project_id, key_id);
