-- Realtime (issue 15): per-hour event and subscriber quotas beside the per-minute one,
-- and the counters the tenants' publishes are admitted against.

ALTER TABLE berqenas.plans ADD COLUMN realtime_events_per_hour integer NOT NULL DEFAULT 36000;
UPDATE berqenas.plans SET realtime_events_per_hour = CASE name
    WHEN 'free' THEN 1800
    WHEN 'starter' THEN 18000
    WHEN 'professional' THEN 180000
    WHEN 'enterprise' THEN 1800000
    ELSE 3000000 END;
ALTER TABLE berqenas.plans ADD COLUMN realtime_max_subscribers integer NOT NULL DEFAULT 100;
UPDATE berqenas.plans SET realtime_max_subscribers = CASE name
    WHEN 'free' THEN 10
    WHEN 'starter' THEN 100
    WHEN 'professional' THEN 1000
    WHEN 'enterprise' THEN 10000
    ELSE 10000 END;

-- NULL: the plan's value applies.
ALTER TABLE berqenas.tenant_quotas ADD COLUMN realtime_events_per_hour integer;
ALTER TABLE berqenas.tenant_quotas ADD COLUMN realtime_max_subscribers integer;

CREATE OR REPLACE VIEW berqenas.effective_quotas AS
SELECT t.id AS tenant_id,
       t.db_quota_bytes,
       coalesce(q.max_connections, p.max_connections) AS max_connections,
       coalesce(q.statement_timeout_ms, p.statement_timeout_ms) AS statement_timeout_ms,
       coalesce(q.api_calls_per_minute, p.api_calls_per_minute) AS api_calls_per_minute,
       coalesce(q.realtime_events_per_minute, p.realtime_events_per_minute) AS realtime_events_per_minute,
       coalesce(q.max_users, p.max_users) AS max_users,
       coalesce(q.max_llm_tokens_per_day, p.llm_tokens_per_day) AS max_llm_tokens_per_day,
       coalesce(q.max_agents, p.max_agents) AS max_agents,
       coalesce(q.max_concurrent_agents, p.concurrent_agents) AS max_concurrent_agents,
       coalesce(q.max_data_retention_days, p.retention_days) AS max_data_retention_days,
       coalesce(q.transaction_timeout_ms, p.transaction_timeout_ms) AS transaction_timeout_ms,
       coalesce(q.realtime_events_per_hour, p.realtime_events_per_hour) AS realtime_events_per_hour,
       coalesce(q.realtime_max_subscribers, p.realtime_max_subscribers) AS realtime_max_subscribers
  FROM berqenas.tenants t
  JOIN berqenas.plans p ON p.name = t.plan
  LEFT JOIN berqenas.tenant_quotas q ON q.tenant_id = t.id;

-- The events a tenant published in the current minute and hour (one row per window
-- kind, restarted when its window moves on). Only berqenas_realtime.admit writes it:
-- a tenant can neither read nor reset its counter, nor raise its limits.
CREATE TABLE berqenas.realtime_counters (
    tenant_id    uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    window_kind  text NOT NULL CHECK (window_kind IN ('minute', 'hour')),
    window_start timestamptz NOT NULL,
    events       bigint NOT NULL,
    PRIMARY KEY (tenant_id, window_kind)
);
REVOKE ALL ON berqenas.realtime_counters FROM PUBLIC;

-- Called by the tenant template's realtime_gate trigger, for every event a tenant's
-- session inserts (the data API, SQL, a published table's trigger): one statement
-- path for all of them. The tenant is the connected role's (its login or one of its
-- users), never an argument, so a tenant can only spend its own quota. The
-- counter's row stays locked until the publishing transaction ends, and a refused
-- event rolls its increment back with it: exactly the events over a limit fail.
CREATE SCHEMA berqenas_realtime;
REVOKE ALL ON SCHEMA berqenas_realtime FROM PUBLIC;
GRANT USAGE ON SCHEMA berqenas_realtime TO PUBLIC;

-- Counts one event of tenant `tid` against its limits, or raises 53400. Only the
-- control role calls it directly (database mode's API publishes: that tenant's table
-- is in its own database, where this function is not).
CREATE FUNCTION berqenas_realtime.admit_for(tid uuid) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    per_minute integer;
    per_hour integer;
    n bigint;
    minute_start timestamptz := date_trunc('minute', now());
    hour_start timestamptz := date_trunc('hour', now());
    wait integer;
BEGIN
    SELECT q.realtime_events_per_minute, q.realtime_events_per_hour INTO per_minute, per_hour
      FROM berqenas.effective_quotas q WHERE q.tenant_id = tid;
    INSERT INTO berqenas.realtime_counters AS c (tenant_id, window_kind, window_start, events)
         VALUES (tid, 'minute', minute_start, 1)
    ON CONFLICT (tenant_id, window_kind) DO UPDATE
        SET events = CASE WHEN c.window_start = excluded.window_start THEN c.events + 1 ELSE 1 END,
            window_start = excluded.window_start
    RETURNING c.events INTO n;
    IF n > per_minute THEN
        wait := greatest(1, ceil(extract(epoch FROM minute_start + interval '1 minute' - clock_timestamp())));
        RAISE EXCEPTION 'realtime_events_per_minute (%) reached: the event is refused; retry in % s', per_minute, wait
            USING ERRCODE = '53400', HINT = 'retry_after=' || wait;
    END IF;
    INSERT INTO berqenas.realtime_counters AS c (tenant_id, window_kind, window_start, events)
         VALUES (tid, 'hour', hour_start, 1)
    ON CONFLICT (tenant_id, window_kind) DO UPDATE
        SET events = CASE WHEN c.window_start = excluded.window_start THEN c.events + 1 ELSE 1 END,
            window_start = excluded.window_start
    RETURNING c.events INTO n;
    IF n > per_hour THEN
        wait := greatest(1, ceil(extract(epoch FROM hour_start + interval '1 hour' - clock_timestamp())));
        RAISE EXCEPTION 'realtime_events_per_hour (%) reached: the event is refused; retry in % s', per_hour, wait
            USING ERRCODE = '53400', HINT = 'retry_after=' || wait;
    END IF;
END $$;
REVOKE ALL ON FUNCTION berqenas_realtime.admit_for(uuid) FROM PUBLIC;

CREATE FUNCTION berqenas_realtime.admit() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    tid uuid;
BEGIN
    SELECT t.id INTO tid FROM berqenas.tenants t WHERE t.login_role = session_user;
    IF tid IS NULL THEN
        SELECT u.tenant_id INTO tid FROM berqenas.tenant_users u WHERE u.db_user = session_user;
    END IF;
    IF tid IS NULL THEN
        RETURN; -- not a tenant's session: the control plane itself
    END IF;
    PERFORM berqenas_realtime.admit_for(tid);
END $$;
REVOKE ALL ON FUNCTION berqenas_realtime.admit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION berqenas_realtime.admit() TO PUBLIC;
