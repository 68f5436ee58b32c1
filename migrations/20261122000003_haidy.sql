-- Haidy: the patient context created once per patient (a second create is refused by Haidy,
-- and no lookup endpoint is documented, so its id is kept here).
CREATE TABLE haidy_patient_contexts (
    practice_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    context_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, patient_id)
);

-- A user's Haidy email when it differs from their Hint email.
CREATE TABLE haidy_user_emails (
    practice_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, user_id)
);
