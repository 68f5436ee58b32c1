-- Visits that arrive finished (MediQuo's consultations), acknowledged before they are filed.
-- Under a burst, the writer stores each delivery here (one row, one index) and answers the
-- partner; the visit, its write-back job and its trail entry are created in larger batches
-- once the burst passes (visits/recording.rs). One row per partner reference, and none for a
-- reference a visit holds already: a repeated delivery is stored once, as on visits.
CREATE TABLE recording_receipts (
    practice_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    partner_ref TEXT NOT NULL,
    -- The visit's id, as answered to the partner.
    visit_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    -- patient_name, launch and result are sealed exactly as the visit's columns, and moved
    -- there unopened.
    patient_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    launch TEXT NOT NULL,
    result TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, partner, partner_ref)
);
