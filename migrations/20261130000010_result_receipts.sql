-- Partners' results acknowledged before they are filed. Under a burst, the result writer
-- stores each result here (one narrow row, one index) and answers the partner; the visit's
-- completion, its write-back job and its trail entry follow in larger batches once the burst
-- passes (visits/completion.rs). One row per visit: the first result wins, as on the visit.
CREATE TABLE result_receipts (
    practice_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    -- Sealed exactly as the visit's `result` column, and moved there unopened.
    result TEXT NOT NULL,
    -- Who delivered it, for the trail.
    actor_id TEXT NOT NULL,
    actor_roles TEXT NOT NULL,
    actor_support BIGINT NOT NULL CHECK (actor_support IN (0, 1)),
    request_id TEXT,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, visit_id)
);
