-- The PHI audit trail (HIPAA 164.312(b)): who did what, for which patient, when, under which
-- request. Append-only per practice; each entry's hash covers the one before (`prev_hash`),
-- and `audit_heads` holds each practice's last sequence number and hash, so a changed,
-- inserted or deleted entry breaks the chain (`chartbridge audit verify`).
CREATE TABLE audit_events (
    practice_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_roles TEXT NOT NULL,
    platform_support BIGINT NOT NULL CHECK (platform_support IN (0, 1)),
    action TEXT NOT NULL,
    patient_id TEXT,
    visit_id TEXT,
    detail TEXT NOT NULL,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (practice_id, seq)
);
CREATE INDEX audit_by_time ON audit_events (practice_id, at);
CREATE INDEX audit_by_patient ON audit_events (practice_id, patient_id, at);
CREATE INDEX audit_by_actor ON audit_events (practice_id, actor_id, at);

CREATE TABLE audit_heads (
    practice_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
