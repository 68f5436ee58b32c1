-- PostgreSQL roles for Chartbridge: the owner changes the schema (`chartbridge migrate`), the
-- app's role serves. The app's role may only INSERT and SELECT the audit trail: it can neither
-- change nor delete an entry, so a compromised instance cannot rewrite what it recorded (the
-- trail's keyed chain and its published checkpoints find what someone with the owner's rights
-- changes). Run as the owner, once, and again after every `chartbridge migrate` (new tables):
--
--   psql "$OWNER_DATABASE_URL" -v app_role=chartbridge_app -f docs/postgresql-roles.sql
--
-- The role itself is created once per server by a superuser:
--   CREATE ROLE chartbridge_app LOGIN PASSWORD '…';
--   GRANT CONNECT ON DATABASE chartbridge TO chartbridge_app;
-- The test suite's PostgreSQL pass serves every test under such a role.

GRANT USAGE ON SCHEMA public TO :"app_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app_role";
-- The trail: written once, read; never changed or deleted (a practice's purge keeps it).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM :"app_role";
-- The migrations' ledger: read at start (nothing pending: nothing is changed), written by the
-- owner only.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM :"app_role";
