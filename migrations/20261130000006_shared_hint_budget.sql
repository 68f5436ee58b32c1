-- Each practice's Hint budget, shared by every instance on this database (hint/budget.rs):
-- one row per practice to count its calls one at a time, the calls of the last second, and
-- the calls in flight (with how long a crashed holder keeps its slot).
CREATE TABLE hint_budgets (
    practice_id TEXT PRIMARY KEY,
    touched_at BIGINT NOT NULL
);
CREATE TABLE hint_budget_calls (
    practice_id TEXT NOT NULL,
    sent_at BIGINT NOT NULL
);
CREATE INDEX hint_budget_calls_practice ON hint_budget_calls (practice_id, sent_at);
CREATE TABLE hint_budget_slots (
    practice_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    held_until BIGINT NOT NULL,
    PRIMARY KEY (practice_id, holder)
);
