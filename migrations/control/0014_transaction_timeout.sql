-- A bound on a tenant transaction's age, enforced by the watchdog (PostgreSQL 15 has
-- no transaction_timeout setting, and a tenant could SET one away anyway): a
-- transaction kept busy with a statement every few seconds escapes both the statement
-- and the idle-in-transaction timeouts, and can hold its locks for as long as it likes.
ALTER TABLE berqenas.plans ADD COLUMN transaction_timeout_ms integer NOT NULL DEFAULT 60000;
UPDATE berqenas.plans SET transaction_timeout_ms = CASE name
    WHEN 'free' THEN 60000
    WHEN 'starter' THEN 120000
    WHEN 'professional' THEN 300000
    WHEN 'enterprise' THEN 900000
    ELSE 3600000 END;

-- NULL: the plan's value applies.
ALTER TABLE berqenas.tenant_quotas ADD COLUMN transaction_timeout_ms integer;

-- The same view with the new column at its end (CREATE OR REPLACE VIEW may only add
-- columns there).
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
       coalesce(q.transaction_timeout_ms, p.transaction_timeout_ms) AS transaction_timeout_ms
  FROM berqenas.tenants t
  JOIN berqenas.plans p ON p.name = t.plan
  LEFT JOIN berqenas.tenant_quotas q ON q.tenant_id = t.id;
