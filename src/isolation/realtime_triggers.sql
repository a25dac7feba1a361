-- The realtime trigger functions every tenant's realtime_events table fires (template
-- 0003), one copy per database in schema berqenas_realtime, owned by the control
-- role. They name no schema of their own (TG_TABLE_SCHEMA says whose table fired), so
-- one copy serves every tenant of the database. A copy per tenant, as 0002 made them,
-- costs every later create: CREATE TRIGGER looks a function up by name among all
-- functions of that name in the database, a list PostgreSQL rebuilds after each
-- pg_proc change, so it grew with the tenants (docs/scale.md).
--
-- Not SECURITY DEFINER: they run with the rights of the session that inserts, as
-- 0002's did. PUBLIC keeps EXECUTE (a tenant's owner role creates the triggers).
--
-- Idempotent, and never replaces a function: a changed body is a new name (and a
-- template migration pointing the triggers at it), so installs that race never
-- rewrite one catalog row. Runs as the control role; the advisory lock keeps two
-- installs in one database (two berqenas instances starting) apart.

SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('berqenas.realtime_triggers'));
DO $berqenas$
BEGIN
    IF pg_catalog.to_regnamespace('berqenas_realtime') IS NULL THEN
        CREATE SCHEMA berqenas_realtime;
        REVOKE ALL ON SCHEMA berqenas_realtime FROM PUBLIC;
        GRANT USAGE ON SCHEMA berqenas_realtime TO PUBLIC;
    ELSIF (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = 'berqenas_realtime')
          <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'schema berqenas_realtime is not the control role''s: refusing to use it';
    END IF;

    IF pg_catalog.to_regprocedure('berqenas_realtime.event_gate()') IS NULL THEN
        -- Before an event is stored: a restore (the table's owner, or a member of it,
        -- writing rows with their ids) keeps them; a tenant's publish takes the
        -- tenant's row in realtime_lock (held to commit, so one tenant's events commit
        -- in id order), is counted against its quota, and only then draws its id.
        CREATE FUNCTION berqenas_realtime.event_gate() RETURNS trigger LANGUAGE plpgsql
            SET search_path = pg_catalog, pg_temp AS $gate$
        BEGIN
            IF NEW.id IS NOT NULL AND pg_catalog.pg_has_role(
                    (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID), 'USAGE') THEN
                RETURN NEW;
            END IF;
            EXECUTE pg_catalog.format('INSERT INTO %I.realtime_lock AS l (k) VALUES (true)
                            ON CONFLICT ON CONSTRAINT realtime_lock_one DO UPDATE SET n = l.n + 1',
                           TG_TABLE_SCHEMA);
            -- The quota: limits and counters are the control plane's, out of the
            -- tenant's reach (berqenas_realtime.admit, here or in the control database).
            IF pg_catalog.to_regproc('berqenas_realtime.admit') IS NOT NULL THEN
                PERFORM berqenas_realtime.admit();
            END IF;
            EXECUTE pg_catalog.format('SELECT %I.realtime_next_id()', TG_TABLE_SCHEMA) INTO NEW.id;
            NEW.created_at := pg_catalog.now();
            RETURN NEW;
        END $gate$;
    END IF;

    IF pg_catalog.to_regprocedure('berqenas_realtime.event_immutable()') IS NULL THEN
        CREATE FUNCTION berqenas_realtime.event_immutable() RETURNS trigger LANGUAGE plpgsql
            SET search_path = pg_catalog, pg_temp AS $immutable$
        BEGIN
            RAISE EXCEPTION 'realtime events cannot be changed once published; delete them instead'
                USING ERRCODE = '55000';
        END $immutable$;
    END IF;

    IF pg_catalog.to_regprocedure('berqenas_realtime.event_wake()') IS NULL THEN
        -- An empty notification on one channel shared by everyone: it says only that
        -- some tenant published; the server reads the rows itself, with its own role.
        CREATE FUNCTION berqenas_realtime.event_wake() RETURNS trigger LANGUAGE plpgsql
            SET search_path = pg_catalog, pg_temp AS $wake$
        BEGIN
            PERFORM pg_catalog.pg_notify('berqenas_realtime', '');
            RETURN NULL;
        END $wake$;
    END IF;
END $berqenas$;
