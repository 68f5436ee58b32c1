-- Every handshake accepted within its freshness window, by the hash of its signed body, shared
-- by all instances: the same signed body again is a replay and is refused. Rows older than
-- the window are swept with expired sessions.
CREATE TABLE handshake_signatures (
    body_hash TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    seen_at BIGINT NOT NULL
);
CREATE INDEX handshake_signatures_by_seen_at ON handshake_signatures (seen_at);
CREATE INDEX handshake_signatures_by_practice ON handshake_signatures (practice_id);
