-- Signed partner deliveries that matched no visit (unknown visit id, wrong patient, unknown
-- patient code): kept, sealed, for a practice admin to review. Never dropped.
CREATE TABLE unmatched_deliveries (
    id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    reason TEXT NOT NULL,
    reference TEXT,
    body_sealed TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    dismissed_at BIGINT,
    dismissed_by TEXT
);
CREATE UNIQUE INDEX unmatched_by_body ON unmatched_deliveries (practice_id, partner, body_hash);
CREATE INDEX unmatched_open ON unmatched_deliveries (practice_id, dismissed_at, received_at);
