-- Each practice's patients for search, filled from Hint's list once and kept fresh by
-- `patient.*` webhooks and an incremental `updated_at[gt]` sync (hint/patient_index.rs).
-- The name and date of birth are PHI: sealed per row (table, column, practice, patient as
-- associated data); only Hint's opaque id is plain.
CREATE TABLE patient_index (
    practice_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    sealed TEXT NOT NULL,
    indexed_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, patient_id)
);

-- Where a practice's index stands: the first fill's next offset until it is complete
-- (`filled_at`), then the `updated_at` from which the next sync asks Hint for changes.
CREATE TABLE patient_index_state (
    practice_id TEXT PRIMARY KEY,
    fill_offset BIGINT NOT NULL DEFAULT 0,
    fill_started TEXT,
    filled_at BIGINT,
    synced_through TEXT,
    last_sync_at BIGINT
);
