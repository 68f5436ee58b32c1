-- Portable between SQLite and PostgreSQL: TEXT and BIGINT only, times in Unix milliseconds.

-- A Hint practice we have seen in a handshake or an Instant On install.
CREATE TABLE practices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Instant On: the practice-scoped Hint token, sealed; keyed by (product, practice).
CREATE TABLE hint_installations (
    product_id TEXT NOT NULL,
    practice_id TEXT NOT NULL,
    integration_id TEXT,
    token_sealed TEXT NOT NULL,
    installed_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (product_id, practice_id)
);

-- A framed session opened by a signed handshake. Only the key's hash is stored.
CREATE TABLE hint_sessions (
    key_hash TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_email TEXT,
    user_name TEXT,
    roles TEXT NOT NULL,
    access_context TEXT NOT NULL,
    patient_id TEXT,
    interaction_id TEXT,
    access_token_sealed TEXT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX hint_sessions_expiry ON hint_sessions (expires_at);

-- A practice's connection to one partner: plain settings as JSON, secrets sealed.
CREATE TABLE partner_connections (
    practice_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    settings TEXT NOT NULL,
    secrets_sealed TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, partner)
);

-- One launch of a partner tool for a patient, and its result.
CREATE TABLE visits (
    id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    partner TEXT NOT NULL,
    state TEXT NOT NULL,
    partner_ref TEXT,
    launch TEXT NOT NULL,
    result TEXT,
    error_message TEXT,
    hint_interaction_id TEXT,
    hint_status TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX visits_by_patient ON visits (practice_id, patient_id, created_at);
CREATE INDEX visits_by_practice ON visits (practice_id, created_at);
CREATE INDEX visits_by_interaction ON visits (practice_id, hint_interaction_id);
CREATE UNIQUE INDEX visits_by_partner_ref ON visits (practice_id, partner, partner_ref);

-- The durable job queue. One live job per dedupe_key; `rerun` asks for one more pass when
-- work is enqueued while the job runs.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    locked_by TEXT,
    locked_until BIGINT,
    rerun BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_by_practice ON jobs (practice_id, state);

-- Deliveries already processed, for webhooks that may arrive twice.
CREATE TABLE inbound_events (
    practice_id TEXT NOT NULL,
    source TEXT NOT NULL,
    event_key TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, source, event_key)
);
