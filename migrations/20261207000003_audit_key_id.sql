-- The id of the key each trail entry's hash was made under (`audit/key.rs`). Entries written
-- before the chain was keyed keep '' (a plain SHA-256). Adding a column with a constant default
-- rewrites nothing on either database (PostgreSQL 11+ stores the default in the catalogue).
ALTER TABLE audit_events ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
