-- A partner's own reference (MediQuo's consultation id) is unique per practice and partner
-- where there is one. Visits without one (Tiep, HCW@Home, Haidy) are no longer in the index:
-- the planner took it for a lookup by (practice, partner) and walked every such visit of the
-- practice to find one by its id (12 ms a row at 20,000 visits).
DROP INDEX visits_by_partner_ref;
CREATE UNIQUE INDEX visits_by_partner_ref ON visits (practice_id, partner, partner_ref)
    WHERE partner_ref IS NOT NULL;
