-- pgroar's role: it logs in, opens replication sessions, and reads the source tables. Nothing
-- else (no superuser, no table ownership). Run as a superuser or a role with CREATEROLE.
-- Idempotent. Set its password afterwards: \password pgroar
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgroar') THEN
    CREATE ROLE pgroar LOGIN REPLICATION;
  ELSE
    ALTER ROLE pgroar LOGIN REPLICATION;
  END IF;
END
$$;
