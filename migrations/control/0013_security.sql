-- Template migrations of a schema-mode tenant run on a session of a throw-away role
-- that holds the tenant owner's rights and nothing else, so that code of the tenant's
-- (a trigger, a function shadowing pg_catalog's, a default) that runs during the
-- migration can never reach a privileged role. The registry must still move in the
-- same transaction as the tenant's DDL: that session calls
-- berqenas_session.record_template_version(), which moves exactly the tenant and
-- version the control plane registered for that session's role, once.

DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'berqenas_migration_session') THEN
        CREATE ROLE berqenas_migration_session NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

CREATE TABLE berqenas.migration_sessions (
    role           name PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    from_version   integer NOT NULL,
    target_version integer NOT NULL,
    run_id         uuid NOT NULL,
    actor          text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON berqenas.migration_sessions FROM PUBLIC;

CREATE SCHEMA berqenas_session;
REVOKE ALL ON SCHEMA berqenas_session FROM PUBLIC;

-- Runs as its owner (the control role) with a pinned search path; takes nothing from
-- its caller: the tenant and version come from the row registered for session_user
-- (the throw-away role, which code running in the session cannot change), and the
-- row is consumed, so calling it again, or from anywhere else, does nothing but fail.
CREATE FUNCTION berqenas_session.record_template_version() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s berqenas.migration_sessions;
BEGIN
    DELETE FROM berqenas.migration_sessions WHERE role = session_user RETURNING * INTO s;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no template migration is registered for this session'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE berqenas.tenants SET template_version = s.target_version, updated_at = now()
     WHERE id = s.tenant_id;
    INSERT INTO berqenas.audit_log (actor, action, tenant_id, tenant_name, details)
    SELECT s.actor, 'tenant_migrated', t.id, t.name,
           jsonb_build_object('from_version', s.from_version, 'to_version', s.target_version,
                              'run_id', s.run_id)
      FROM berqenas.tenants t WHERE t.id = s.tenant_id;
END $$;
REVOKE ALL ON FUNCTION berqenas_session.record_template_version() FROM PUBLIC;
GRANT USAGE ON SCHEMA berqenas_session TO berqenas_migration_session;
GRANT EXECUTE ON FUNCTION berqenas_session.record_template_version() TO berqenas_migration_session;

-- Every worker round re-checks what berqenas made of each tenant's roles. A login
-- role's password is one berqenas knows (it hands it out): the SHA-256 of the SCRAM
-- verifier last seen to match it, so a round compares strings and derives a key only
-- when the verifier changed.
ALTER TABLE berqenas.tenants ADD COLUMN verifier_sha256 bytea;
ALTER TABLE berqenas.tenant_users ADD COLUMN verifier_sha256 bytea;

-- A database-mode tenant's database at this hardening level has had PUBLIC's rights
-- taken that the current release takes (large-object writers). Databases made before
-- are brought up to it by the worker; new ones are cloned from a template that is.
ALTER TABLE berqenas.tenants ADD COLUMN hardening_level integer NOT NULL DEFAULT 0;
ALTER TABLE berqenas.tenants ALTER COLUMN hardening_level SET DEFAULT 1;
