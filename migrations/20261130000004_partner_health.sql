-- Each practice's connection to each partner: when a call last worked, when one last failed
-- and why (our words, never the partner's text), and since when calls have been failing.
CREATE TABLE partner_health (
    practice_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    last_success_at BIGINT,
    last_failure_at BIGINT,
    last_failure TEXT,
    failing_since BIGINT,
    PRIMARY KEY (practice_id, partner)
);
