-- The sweep ends sessions by absolute or idle expiry (`expires_at <= $1 OR last_seen_at <= $2`):
-- with the OR it reads the table whatever the index, once a minute, while every new session
-- paid for the index. Dropped (portable: both databases).
DROP INDEX hint_sessions_expiry;
