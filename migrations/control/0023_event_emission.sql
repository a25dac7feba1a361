-- Events (docs/events.md): what emitting them needs beyond the outbox itself.

-- A quota berqenas observes rather than changes (connections at their limit, a rate
-- refusing calls) is exceeded from the first observation to the recovery: one row per
-- tenant and quota while it is, so several servers announce each crossing once.
CREATE TABLE berqenas.quota_breaches (
    tenant_id uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    quota     text NOT NULL CHECK (quota IN ('connections', 'rate', 'realtime')),
    since     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, quota)
);

-- `usage.reported`: up to when each tenant's usage has been reported; the next report
-- starts there, so periods neither overlap nor leave gaps.
CREATE TABLE berqenas.usage_reports (
    tenant_id      uuid PRIMARY KEY REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    reported_until timestamptz NOT NULL
);

-- A schema-mode tenant's template migration commits on the tenant's own session
-- (0013): its `migration.completed` event must commit there too. The caller holds the
-- tenant's name lock meanwhile, so the event takes its `seq` inside it, as every
-- event does.
CREATE OR REPLACE FUNCTION berqenas_session.record_template_version() RETURNS void
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
    INSERT INTO berqenas.outbox (id, type, tenant_id, tenant_name, data)
    SELECT berqenas_session.uuid_v7(), 'migration.completed', t.id, t.name,
           jsonb_build_object('run_id', s.run_id, 'from_version', s.from_version,
                              'to_version', s.target_version)
      FROM berqenas.tenants t WHERE t.id = s.tenant_id;
    INSERT INTO berqenas.audit_log (actor, action, tenant_id, tenant_name, details)
    SELECT s.actor, 'tenant_migrated', t.id, t.name,
           jsonb_build_object('from_version', s.from_version, 'to_version', s.target_version,
                              'run_id', s.run_id)
      FROM berqenas.tenants t WHERE t.id = s.tenant_id;
END $$;
REVOKE ALL ON FUNCTION berqenas_session.record_template_version() FROM PUBLIC;

-- An event id as the server makes them (UUIDv7: 48 bits of Unix milliseconds, version
-- 7, random bits), for the event written in SQL above.
CREATE FUNCTION berqenas_session.uuid_v7() RETURNS uuid
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT encode(
               set_bit(set_bit(
                   overlay(uuid_send(gen_random_uuid())
                           PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                           FROM 1 FOR 6),
                   52, 1), 53, 1),
               'hex')::uuid
$$;
REVOKE ALL ON FUNCTION berqenas_session.uuid_v7() FROM PUBLIC;
