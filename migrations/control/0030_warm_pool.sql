-- The warm pool (docs/warm_pool.md): unclaimed tenants prepared in the background
-- (roles, schema or shared-pool member rows, the template applied, everything
-- NOLOGIN, under placeholder names `tenant_wp__<key>_*`). A create claims one in its
-- own transaction (DELETE ... FOR UPDATE SKIP LOCKED) and renames it to the tenant's
-- names. Members have no tenant row: tenant lists, metrics and the data API never
-- see them. `server` keys the pool by PostgreSQL server once there are several.
CREATE TABLE berqenas.warm_pool (
    id               uuid PRIMARY KEY,
    -- The placeholder's key: its objects are named tenant_wp__<key>[_role].
    key              text NOT NULL UNIQUE CHECK (key ~ '^[0-9a-f]{20}$'),
    isolation        text NOT NULL CHECK (isolation IN ('schema', 'shared', 'database')),
    template_version integer NOT NULL,
    server           text NOT NULL DEFAULT 'default',
    created_at       timestamptz NOT NULL DEFAULT now()
);
-- A claim takes the oldest member of its (server, mode, version).
CREATE INDEX warm_pool_claim_idx
    ON berqenas.warm_pool (server, isolation, template_version, created_at);
