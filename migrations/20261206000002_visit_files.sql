-- Files a partner gives with a visit's result (Haidy's report PDF), sealed like the rest of the
-- visit's patient data, and the short-lived links through which Hint copies one into the chart
-- as an attachment of the visit's document (one file, one practice, minutes, a few downloads).
CREATE TABLE visit_files (
    id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    bytes_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX visit_files_by_visit ON visit_files (practice_id, visit_id);

CREATE TABLE file_links (
    id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    downloads_left BIGINT NOT NULL
);
CREATE INDEX file_links_by_practice ON file_links (practice_id);
