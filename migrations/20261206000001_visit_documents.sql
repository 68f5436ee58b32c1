-- The visit's record in the patient's chart: the Hint document interaction that holds its
-- result as Markdown (written once the visit is signed), beside the partner interaction that
-- links back to our page.
ALTER TABLE visits ADD COLUMN hint_document_id TEXT;
