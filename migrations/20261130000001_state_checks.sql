-- The database keeps states the code does not know out of `visits` and `jobs` (the code reads
-- an unknown one as an error, never as a default). The allowed moves between visit states are
-- in `visits::lifecycle`; here, what must hold in any state: a visit is finished (has
-- completed_at) exactly when it is no longer open. SQLite cannot add a constraint to a table,
-- so both tables are rebuilt, the same way on both databases.

CREATE TABLE visits_checked (
    id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    partner TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('launching', 'in_progress', 'completed', 'failed', 'cancelled')),
    partner_ref TEXT,
    launch TEXT NOT NULL,
    result TEXT,
    error_message TEXT,
    hint_interaction_id TEXT,
    hint_status TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT,
    CHECK ((state IN ('launching', 'in_progress')) = (completed_at IS NULL)),
    CHECK (state <> 'completed' OR result IS NOT NULL)
);
INSERT INTO visits_checked (id, practice_id, patient_id, patient_name, user_id, user_name, partner,
    state, partner_ref, launch, result, error_message, hint_interaction_id, hint_status,
    created_at, updated_at, completed_at)
SELECT id, practice_id, patient_id, patient_name, user_id, user_name, partner,
    state, partner_ref, launch, result, error_message, hint_interaction_id, hint_status,
    created_at, updated_at, completed_at
FROM visits;
DROP TABLE visits;
ALTER TABLE visits_checked RENAME TO visits;
CREATE INDEX visits_by_patient ON visits (practice_id, patient_id, created_at);
CREATE INDEX visits_by_practice ON visits (practice_id, created_at);
CREATE INDEX visits_by_interaction ON visits (practice_id, hint_interaction_id);
CREATE UNIQUE INDEX visits_by_partner_ref ON visits (practice_id, partner, partner_ref);

CREATE TABLE jobs_checked (
    id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'dead')),
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    locked_by TEXT,
    locked_until BIGINT,
    rerun BIGINT NOT NULL CHECK (rerun IN (0, 1)),
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK ((locked_by IS NULL) = (locked_until IS NULL))
);
INSERT INTO jobs_checked (id, practice_id, kind, dedupe_key, payload, state, attempts,
    max_attempts, run_at, locked_by, locked_until, rerun, last_error, created_at, updated_at)
SELECT id, practice_id, kind, dedupe_key, payload, state, attempts,
    max_attempts, run_at, locked_by, locked_until, rerun, last_error, created_at, updated_at
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_checked RENAME TO jobs;
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_by_practice ON jobs (practice_id, state);
