-- The control plane's registry. Tenant data never lives in this schema.

CREATE TABLE berqenas.plans (
    name                   text PRIMARY KEY,
    max_users              integer NOT NULL,
    api_calls_per_minute   integer NOT NULL,
    storage_bytes          bigint  NOT NULL,
    max_connections        integer NOT NULL,
    statement_timeout_ms   integer NOT NULL,
    llm_tokens_per_day     bigint  NOT NULL,
    max_agents             integer NOT NULL,
    concurrent_agents      integer NOT NULL,
    retention_days         integer NOT NULL,
    trial_days             integer NOT NULL DEFAULT 0
);

-- Seed 002's tier table; connections and statement timeouts are ours (the seed has none).
INSERT INTO berqenas.plans VALUES
    ('free',         1,      100,    1::bigint << 30,      5,  30000,      10000,    10,     2,   30, 0),
    ('starter',      10,     1000,   10::bigint << 30,     20, 60000,      100000,   100,    10,  90, 0),
    ('professional', 100,    10000,  100::bigint << 30,    50, 120000,     1000000,  1000,   50,  365, 0),
    ('enterprise',   1000,   100000, 10000::bigint << 30,  200, 300000,    10000000, 10000,  500, 1825, 0),
    ('custom',       10000,  100000, 100000::bigint << 30, 500, 600000,    100000000, 50000, 1000, 3650, 0);

CREATE TABLE berqenas.tenants (
    id               uuid PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    status           text NOT NULL CHECK (status IN ('provisioning','trial','active','suspended','deleted','purged','failed')),
    plan             text NOT NULL REFERENCES berqenas.plans (name),
    isolation        text NOT NULL CHECK (isolation IN ('schema','database','shared')),
    schema_name      text,
    database_name    text NOT NULL,
    owner_role       text NOT NULL,
    login_role       text NOT NULL,
    db_quota_bytes   bigint NOT NULL CHECK (db_quota_bytes > 0),
    vpn_enabled      boolean NOT NULL,
    public_api       boolean NOT NULL,
    metadata         jsonb NOT NULL DEFAULT '{}',
    template_version integer NOT NULL,
    -- the login role's password, sealed with AES-256-GCM under the server's secret key
    credentials      bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_status_idx ON berqenas.tenants (status);
CREATE INDEX tenants_plan_idx ON berqenas.tenants (plan);

CREATE TABLE berqenas.api_keys (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    -- the public part of the key, used to find the row; the secret is only hashed
    prefix       text NOT NULL UNIQUE,
    hash         bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant_idx ON berqenas.api_keys (tenant_id);

CREATE TABLE berqenas.operations (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL,
    tenant_id        uuid,
    tenant_name      text NOT NULL,
    state            text NOT NULL CHECK (state IN ('running','succeeded','failed')),
    idempotency_key  text UNIQUE,
    request_hash     bytea,
    response_status  integer,
    -- the first response, sealed (it holds the once-shown secrets), for replays
    response         bytea,
    error            text,
    lease_until      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX operations_running_idx ON berqenas.operations (lease_until) WHERE state = 'running';

CREATE TABLE berqenas.operation_steps (
    operation_id uuid NOT NULL REFERENCES berqenas.operations (id) ON DELETE CASCADE,
    seq          integer NOT NULL,
    name         text NOT NULL,
    state        text NOT NULL CHECK (state IN ('applied','reverted','failed')),
    at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operation_id, seq)
);

CREATE TABLE berqenas.audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    tenant_id    uuid,
    tenant_name  text,
    operation_id uuid,
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant_idx ON berqenas.audit_log (tenant_id);

-- The tenant template's migrations as applied at least once, to refuse a changed file.
CREATE TABLE berqenas.template_migrations (
    version  integer PRIMARY KEY,
    name     text NOT NULL,
    checksum text NOT NULL
);
