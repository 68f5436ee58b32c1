-- A user's sessions, newest first: the per-user cap ends the oldest beyond it.
CREATE INDEX hint_sessions_by_user ON hint_sessions (practice_id, user_id, created_at);
