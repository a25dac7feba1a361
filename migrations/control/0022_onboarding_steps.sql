-- External onboarding steps (docs/onboarding-steps.md): HTTP endpoints an operator
-- registers, which every matching tenant create calls (signed like a webhook) after the
-- database work and before the tenant is active. The secret is sealed with the server's
-- key; it is shown once, at registration.
CREATE TABLE berqenas.onboarding_steps (
    id             uuid PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
    url            text NOT NULL,
    -- which creates run it: null matches every plan / isolation mode
    when_plan      text REFERENCES berqenas.plans (name),
    when_isolation text CHECK (when_isolation IN ('schema', 'database', 'shared')),
    timeout_ms     integer NOT NULL CHECK (timeout_ms BETWEEN 1000 AND 3600000),
    compensate_url text,
    secret         bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON berqenas.onboarding_steps FROM PUBLIC;

-- What each step answered, shown on the tenant as `integrations.<name>`.
ALTER TABLE berqenas.tenants ADD COLUMN integrations jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(integrations) = 'object');

-- The operations API lists a tenant's operations by name, newest first.
CREATE INDEX operations_tenant_name_idx ON berqenas.operations (tenant_name, id);
