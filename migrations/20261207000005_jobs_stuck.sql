-- Stuck work (dead jobs, and jobs failing for the third time or more) by practice, newest
-- first: the core page lists the newest and counts them on every view. Without it each view
-- read every job of the practice (its queued polls too) to find them. The queue is a small
-- table (a finished job is deleted), so the index builds in a moment. The predicate is the
-- one `jobs::stuck_for_practice` writes, word for word (SQLite uses a partial index only then).
CREATE INDEX jobs_stuck ON jobs (practice_id, updated_at, state)
    WHERE state = 'dead' OR (attempts >= 3 AND last_error IS NOT NULL);
