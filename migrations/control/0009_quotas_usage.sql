-- Quotas: the plan holds the defaults, a tenant may override any of them. The disk
-- quota stays in tenants.db_quota_bytes (it was one from the start).

ALTER TABLE berqenas.plans ADD COLUMN realtime_events_per_minute integer NOT NULL DEFAULT 600;
UPDATE berqenas.plans SET realtime_events_per_minute = CASE name
    WHEN 'free' THEN 60
    WHEN 'starter' THEN 600
    WHEN 'professional' THEN 6000
    WHEN 'enterprise' THEN 60000
    ELSE 100000 END;

-- NULL: the plan's value applies.
CREATE TABLE berqenas.tenant_quotas (
    tenant_id                  uuid PRIMARY KEY REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    max_connections            integer,
    statement_timeout_ms       integer,
    api_calls_per_minute       integer,
    realtime_events_per_minute integer,
    max_users                  integer,
    max_llm_tokens_per_day     bigint,
    max_agents                 integer,
    max_concurrent_agents      integer,
    max_data_retention_days    integer,
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

-- What applies to each tenant now: one indexed join, read wherever a limit is needed.
CREATE VIEW berqenas.effective_quotas AS
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
       coalesce(q.max_data_retention_days, p.retention_days) AS max_data_retention_days
  FROM berqenas.tenants t
  JOIN berqenas.plans p ON p.name = t.plan
  LEFT JOIN berqenas.tenant_quotas q ON q.tenant_id = t.id;

-- Application-reported usage, one row per tenant, metric and period (a UTC day for
-- daily quotas, the epoch for running totals). Increments are one UPDATE each.
CREATE TABLE berqenas.usage_counters (
    tenant_id    uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    metric       text NOT NULL,
    period_start timestamptz NOT NULL,
    amount       bigint NOT NULL CHECK (amount >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, metric, period_start)
);

-- The worker's last disk measurement, and whether the tenant's writes are cut off.
-- `revoked` lists the exact grants taken away, so exactly those come back.
CREATE TABLE berqenas.disk_usage (
    tenant_id      uuid PRIMARY KEY REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    bytes          bigint NOT NULL,
    measured_at    timestamptz NOT NULL DEFAULT now(),
    writes_blocked boolean NOT NULL DEFAULT false,
    blocked_since  timestamptz,
    revoked        jsonb NOT NULL DEFAULT '[]'
);
