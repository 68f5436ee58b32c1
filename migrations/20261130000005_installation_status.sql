-- An install is active, pending (installed without activation: it waits for Hint's
-- `integration.activated`), or deactivated (Hint's `integration.deactivated`: background work
-- stops, the practice's data stays until an operator purges it).
ALTER TABLE hint_installations ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'pending', 'deactivated'));
CREATE INDEX hint_installations_practice ON hint_installations (practice_id, status);
