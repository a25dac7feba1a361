-- Suspension: when, why, exactly which login roles lost LOGIN, and which memberships in
-- them (of roles outside the tenant, such as a pooled connection role) were revoked, so
-- that resume gives back exactly those and nothing else.
ALTER TABLE berqenas.tenants
    ADD COLUMN suspended_at timestamptz,
    ADD COLUMN suspension_reason text,
    ADD COLUMN suspended_roles text[],
    ADD COLUMN suspended_memberships jsonb;

-- The audit trail becomes a hash chain: each row stores the hash of the row before it
-- and its own hash = SHA-256(prev_hash || canonical form of its fields). Appends are
-- serialised on the single row of audit_head (locked FOR UPDATE until the appending
-- transaction ends), which also records the chain's tail, so removing the last rows
-- is detected too. `berqenas audit verify` recomputes the chain.
ALTER TABLE berqenas.audit_log
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash bytea;
CREATE INDEX audit_log_action_idx ON berqenas.audit_log (action, id);
CREATE INDEX audit_log_tenant_name_idx ON berqenas.audit_log (tenant_name, id);
CREATE INDEX audit_log_at_idx ON berqenas.audit_log (at);

CREATE TABLE berqenas.audit_head (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id   bigint,
    last_hash bytea NOT NULL,
    row_count bigint NOT NULL
);

-- The bytes a row's hash covers. Independent of the session's time zone and locale.
-- `audit verify` computes the same expression inline rather than trusting this function.
CREATE FUNCTION berqenas.audit_canonical(
    id bigint, at timestamptz, actor text, action text, tenant_id uuid,
    tenant_name text, operation_id uuid, details jsonb
) RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT convert_to(jsonb_build_array(
        id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor, action,
        tenant_id, tenant_name, operation_id, details)::text, 'UTF8')
$$;

-- Link every existing row, oldest first.
DO $$
DECLARE
    r record;
    prev bytea := decode(repeat('00', 32), 'hex');
    h bytea;
    n bigint := 0;
    last bigint;
BEGIN
    FOR r IN SELECT * FROM berqenas.audit_log ORDER BY id LOOP
        h := sha256(prev || berqenas.audit_canonical(r.id, r.at, r.actor, r.action, r.tenant_id,
                                                     r.tenant_name, r.operation_id, r.details));
        UPDATE berqenas.audit_log SET prev_hash = prev, hash = h WHERE id = r.id;
        prev := h;
        n := n + 1;
        last := r.id;
    END LOOP;
    INSERT INTO berqenas.audit_head (last_id, last_hash, row_count) VALUES (last, prev, n);
END $$;

ALTER TABLE berqenas.audit_log
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL,
    -- The id is taken under the chain's lock (below), so id order is chain order.
    ALTER COLUMN id DROP DEFAULT;

CREATE FUNCTION berqenas.audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head berqenas.audit_head;
BEGIN
    SELECT * INTO STRICT head FROM berqenas.audit_head FOR UPDATE;
    NEW.id := nextval('berqenas.audit_log_id_seq');
    NEW.prev_hash := head.last_hash;
    NEW.hash := sha256(head.last_hash || berqenas.audit_canonical(NEW.id, NEW.at, NEW.actor,
        NEW.action, NEW.tenant_id, NEW.tenant_name, NEW.operation_id, NEW.details));
    UPDATE berqenas.audit_head
       SET last_id = NEW.id, last_hash = NEW.hash, row_count = row_count + 1;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON berqenas.audit_log
    FOR EACH ROW EXECUTE FUNCTION berqenas.audit_chain();

-- Append-only, even for the table's owner. (A superuser can still disable triggers;
-- `audit verify` then finds what was changed.)
CREATE FUNCTION berqenas.audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'berqenas.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON berqenas.audit_log
    FOR EACH ROW EXECUTE FUNCTION berqenas.audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON berqenas.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION berqenas.audit_refuse();

-- The head changes only through the chain trigger (one trigger level down).
CREATE FUNCTION berqenas.audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'berqenas.audit_head changes only by appending to berqenas.audit_log'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_head_guard BEFORE INSERT OR UPDATE OR DELETE ON berqenas.audit_head
    FOR EACH ROW EXECUTE FUNCTION berqenas.audit_head_guard();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON berqenas.audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION berqenas.audit_refuse();

REVOKE ALL ON berqenas.audit_log, berqenas.audit_head FROM PUBLIC;
REVOKE ALL ON SEQUENCE berqenas.audit_log_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION berqenas.audit_canonical(bigint, timestamptz, text, text, uuid, text, uuid, jsonb),
    berqenas.audit_chain(), berqenas.audit_refuse(), berqenas.audit_head_guard() FROM PUBLIC;

-- Seed 002's monitoring views, on our tables.

-- Active (and trial) tenants with their quota use. Storage is measured for schema and
-- database mode; shared-mode tenants' rows live in shared tables, so it is NULL there.
CREATE VIEW berqenas.v_active_tenants AS
SELECT t.id, t.name, t.status, t.plan, t.isolation,
       s.storage_bytes AS storage_used_bytes,
       t.db_quota_bytes,
       round(100.0 * s.storage_bytes / t.db_quota_bytes, 1) AS storage_utilization_percent,
       u.users,
       p.max_users,
       round(100.0 * u.users / nullif(p.max_users, 0), 1) AS users_utilization_percent,
       k.active_api_keys,
       t.trial_ends_at,
       t.created_at
  FROM berqenas.tenants t
  JOIN berqenas.plans p ON p.name = t.plan
  CROSS JOIN LATERAL (
      SELECT CASE t.isolation
          WHEN 'schema' THEN (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                               WHERE n.nspname = t.schema_name AND c.relkind IN ('r', 'm'))
          WHEN 'database' THEN (SELECT pg_database_size(d.oid) FROM pg_database d
                                 WHERE d.datname = t.database_name)
      END AS storage_bytes) s
  CROSS JOIN LATERAL (
      SELECT count(*) AS users FROM berqenas.tenant_users tu WHERE tu.tenant_id = t.id) u
  CROSS JOIN LATERAL (
      SELECT count(*) AS active_api_keys FROM berqenas.api_keys ak
       WHERE ak.tenant_id = t.id AND ak.revoked_at IS NULL
         AND (ak.expires_at IS NULL OR ak.expires_at > now())) k
 WHERE t.status IN ('active', 'trial');

-- One row per tenant name that appears in the audit trail.
CREATE VIEW berqenas.v_tenant_audit_summary AS
SELECT a.tenant_name,
       (array_agg(a.tenant_id ORDER BY a.id DESC) FILTER (WHERE a.tenant_id IS NOT NULL))[1] AS tenant_id,
       t.status AS current_status,
       count(*) AS events,
       count(DISTINCT a.action) AS distinct_actions,
       (array_agg(a.action ORDER BY a.id DESC))[1] AS last_action,
       min(a.at) AS first_event_at,
       max(a.at) AS last_event_at,
       count(*) FILTER (WHERE a.action = 'tenant_suspended') AS suspensions
  FROM berqenas.audit_log a
  LEFT JOIN berqenas.tenants t ON t.name = a.tenant_name
 WHERE a.tenant_name IS NOT NULL
 GROUP BY a.tenant_name, t.status;

-- Tenants per plan (seed 002's tiers), by state and isolation.
CREATE VIEW berqenas.v_tenants_by_tier AS
SELECT p.name AS plan,
       count(t.id) AS tenants,
       count(*) FILTER (WHERE t.status = 'active') AS active,
       count(*) FILTER (WHERE t.status = 'trial') AS trial,
       count(*) FILTER (WHERE t.status = 'suspended') AS suspended,
       count(*) FILTER (WHERE t.status = 'deleted') AS deleted,
       count(*) FILTER (WHERE t.isolation = 'schema') AS schema_mode,
       count(*) FILTER (WHERE t.isolation = 'database') AS database_mode,
       count(*) FILTER (WHERE t.isolation = 'shared') AS shared_mode,
       coalesce(sum(t.db_quota_bytes), 0)::bigint AS total_quota_bytes
  FROM berqenas.plans p
  LEFT JOIN berqenas.tenants t ON t.plan = p.name
 GROUP BY p.name, p.storage_bytes
 ORDER BY p.storage_bytes;

REVOKE ALL ON berqenas.v_active_tenants, berqenas.v_tenant_audit_summary,
    berqenas.v_tenants_by_tier FROM PUBLIC;
