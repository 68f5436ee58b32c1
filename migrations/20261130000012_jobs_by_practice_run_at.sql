-- A practice's queued jobs in `run_at` order. A claim that passes over saturated or paused
-- practices first finds the practices with due jobs by probing this index once per practice
-- (a skip scan; the first entry of a practice's queued jobs is its earliest), instead of
-- reading the passed-over backlogs row by row: that was a scan of 80,000 rows twice a second
-- while one practice's write-backs waited on its Hint budget. See jobs/runner.rs, `claim`.
DROP INDEX jobs_by_practice;
CREATE INDEX jobs_by_practice ON jobs (practice_id, state, run_at);
