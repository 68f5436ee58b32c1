-- Whether a kept file is attached to the visit's document in Hint: a file kept later (Haidy's
-- report approved again) is attached when the correction is written. A new column with a
-- constant default is a catalogue change on both databases (no table rewrite).
ALTER TABLE visit_files ADD COLUMN in_chart INTEGER NOT NULL DEFAULT 0;
UPDATE visit_files SET in_chart = 1
WHERE EXISTS (
    SELECT 1 FROM visits
    WHERE visits.practice_id = visit_files.practice_id
      AND visits.id = visit_files.visit_id
      AND visits.hint_document_id IS NOT NULL
);
