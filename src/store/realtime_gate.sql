-- The realtime gate of a database-mode tenant (issue 15), inside the tenant's own
-- database, where the control database's berqenas_realtime.admit cannot be reached.
-- Run by the control role (which owns the database: the tenant's roles may only
-- CONNECT there, so they can create no schema of this name first, and own nothing
-- here). The template's realtime_gate trigger calls berqenas_realtime.admit() for
-- every event a tenant's session inserts; the limits are the server's copy of the
-- tenant's effective quotas (synced at create, at every quota or plan change, and
-- by the quota round); the counters are mirrored into the control database by the
-- quota round for /metrics and quota.exceeded. Idempotent.

CREATE SCHEMA IF NOT EXISTS berqenas_realtime;
DO $$
BEGIN
    IF (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = 'berqenas_realtime')
       <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'schema berqenas_realtime is not the control role''s: refusing to use it';
    END IF;
END $$;
REVOKE ALL ON SCHEMA berqenas_realtime FROM PUBLIC;
GRANT USAGE ON SCHEMA berqenas_realtime TO PUBLIC;

CREATE TABLE IF NOT EXISTS berqenas_realtime.limits (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    per_minute integer NOT NULL,
    per_hour   integer NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS berqenas_realtime.counters (
    window_kind  text PRIMARY KEY CHECK (window_kind IN ('minute', 'hour')),
    window_start timestamptz NOT NULL,
    events       bigint NOT NULL
);
REVOKE ALL ON berqenas_realtime.limits, berqenas_realtime.counters FROM PUBLIC;

-- Counts `n` events against both windows, all or none (53400 refuses; the caller's
-- transaction takes the increments back). The same rule as the control database's
-- berqenas_realtime.admit_n. No limits row: refused (it is written with the schema).
CREATE OR REPLACE FUNCTION berqenas_realtime.admit_n(n bigint) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    per_minute integer;
    per_hour integer;
    minute_used bigint;
    hour_used bigint;
    minute_start timestamptz := date_trunc('minute', now());
    hour_start timestamptz := date_trunc('hour', now());
    wait integer;
BEGIN
    SELECT l.per_minute, l.per_hour INTO per_minute, per_hour FROM berqenas_realtime.limits l;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'realtime limits are not set for this database yet: the event is refused'
            USING ERRCODE = '53400', HINT = 'retry_after=60';
    END IF;
    INSERT INTO berqenas_realtime.counters AS c (window_kind, window_start, events)
         VALUES ('minute', minute_start, n)
    ON CONFLICT (window_kind) DO UPDATE
        SET events = CASE WHEN c.window_start = excluded.window_start THEN c.events + n ELSE n END,
            window_start = excluded.window_start
    RETURNING c.events INTO minute_used;
    IF minute_used > per_minute THEN
        wait := greatest(1, ceil(extract(epoch FROM minute_start + interval '1 minute' - clock_timestamp())));
        RAISE EXCEPTION 'realtime_events_per_minute (%) reached: the event is refused; retry in % s', per_minute, wait
            USING ERRCODE = '53400', HINT = 'retry_after=' || wait;
    END IF;
    INSERT INTO berqenas_realtime.counters AS c (window_kind, window_start, events)
         VALUES ('hour', hour_start, n)
    ON CONFLICT (window_kind) DO UPDATE
        SET events = CASE WHEN c.window_start = excluded.window_start THEN c.events + n ELSE n END,
            window_start = excluded.window_start
    RETURNING c.events INTO hour_used;
    IF hour_used > per_hour THEN
        wait := greatest(1, ceil(extract(epoch FROM hour_start + interval '1 hour' - clock_timestamp())));
        RAISE EXCEPTION 'realtime_events_per_hour (%) reached: the event is refused; retry in % s', per_hour, wait
            USING ERRCODE = '53400', HINT = 'retry_after=' || wait;
    END IF;
    RETURN minute_used;
END $$;
REVOKE ALL ON FUNCTION berqenas_realtime.admit_n(bigint) FROM PUBLIC;

-- What the template's trigger calls: every session but the control role's own (a
-- restore writing events back) is counted. SECURITY DEFINER: the tenant can run it,
-- never the counting underneath nor a write to the limits.
CREATE OR REPLACE FUNCTION berqenas_realtime.admit() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF session_user = current_user THEN
        RETURN;
    END IF;
    PERFORM berqenas_realtime.admit_n(1);
END $$;
REVOKE ALL ON FUNCTION berqenas_realtime.admit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION berqenas_realtime.admit() TO PUBLIC;
