-- Corrections: a partner that sends a different result for a signed visit addends it. The
-- visit keeps the latest result; each earlier one is kept sealed in `visit_versions`; Hint's
-- interaction becomes `addended` and the chart's document is rewritten with every version.
-- `addenda` counts the corrections, `document_addenda` how many of them the chart's document
-- shows (the write-back brings it level).
ALTER TABLE visits ADD COLUMN addenda BIGINT NOT NULL DEFAULT 0;
ALTER TABLE visits ADD COLUMN document_addenda BIGINT NOT NULL DEFAULT 0;

CREATE TABLE visit_versions (
    id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    result_sealed TEXT NOT NULL,
    replaced_at BIGINT NOT NULL,
    what_changed TEXT NOT NULL
);
CREATE INDEX visit_versions_by_visit ON visit_versions (practice_id, visit_id, version);
