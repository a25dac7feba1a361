-- Realtime (issue 15): one count of a tenant's events, in SQL, for every publish path
-- and for events an application reports through POST .../usage (metric
-- realtime_events), which the in-memory per-minute limiter used to count apart.
-- Database-mode tenants are counted by the same gate inside their own database
-- (src/store/realtime_gate.sql); the quota round mirrors those counts here.

-- Counts `n` events of tenant `tid` against both windows, all or none: a refusal
-- raises 53400 (hint retry_after=<s>) and the caller's transaction takes the
-- increments back. The counter's row stays locked until that transaction ends.
CREATE FUNCTION berqenas_realtime.admit_n(tid uuid, n bigint) RETURNS bigint
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
    SELECT q.realtime_events_per_minute, q.realtime_events_per_hour INTO per_minute, per_hour
      FROM berqenas.effective_quotas q WHERE q.tenant_id = tid;
    INSERT INTO berqenas.realtime_counters AS c (tenant_id, window_kind, window_start, events)
         VALUES (tid, 'minute', minute_start, n)
    ON CONFLICT (tenant_id, window_kind) DO UPDATE
        SET events = CASE WHEN c.window_start = excluded.window_start THEN c.events + n ELSE n END,
            window_start = excluded.window_start
    RETURNING c.events INTO minute_used;
    IF minute_used > per_minute THEN
        wait := greatest(1, ceil(extract(epoch FROM minute_start + interval '1 minute' - clock_timestamp())));
        RAISE EXCEPTION 'realtime_events_per_minute (%) reached: the event is refused; retry in % s', per_minute, wait
            USING ERRCODE = '53400', HINT = 'retry_after=' || wait;
    END IF;
    INSERT INTO berqenas.realtime_counters AS c (tenant_id, window_kind, window_start, events)
         VALUES (tid, 'hour', hour_start, n)
    ON CONFLICT (tenant_id, window_kind) DO UPDATE
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
REVOKE ALL ON FUNCTION berqenas_realtime.admit_n(uuid, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION berqenas_realtime.admit_for(tid uuid) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM berqenas_realtime.admit_n(tid, 1);
END $$;
