-- Issue 16, items 1-3: each tenant's configuration document (docs/config.md), its
-- sign-in providers (docs/auth-providers.md) and user invitations.

-- A plan's defaults for new tenants' configuration, and optionally the JSON Schema
-- every configuration of a tenant on the plan must satisfy. A plan without a row uses
-- the built-in defaults (seed 004) and no schema.
CREATE TABLE berqenas.plan_config_defaults (
    plan       text PRIMARY KEY REFERENCES berqenas.plans (name) ON DELETE CASCADE,
    defaults   jsonb NOT NULL CHECK (jsonb_typeof(defaults) = 'object'),
    schema     jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every version of every tenant's configuration; the current one is the highest.
-- Version 1 is written by the create, in its transaction.
CREATE TABLE berqenas.tenant_configs (
    tenant_id  uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    version    integer NOT NULL CHECK (version > 0),
    config     jsonb NOT NULL CHECK (jsonb_typeof(config) = 'object'),
    -- the merge patch that made this version (null: the defaults at creation)
    patch      jsonb,
    actor      text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- A tenant's sign-in providers. The client secret is sealed (AES-256-GCM with the
-- server's key); `settings` never holds it.
CREATE TABLE berqenas.auth_providers (
    tenant_id     uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('github', 'entra_id', 'oidc')),
    settings      jsonb NOT NULL CHECK (jsonb_typeof(settings) = 'object'),
    client_secret bytea NOT NULL,
    checked_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind)
);

-- Invited users (seed 001's UserInviteRequest): teams, who invited them, and whether
-- they have taken their credentials yet. Users added directly are `active`.
ALTER TABLE berqenas.tenant_users
    ADD COLUMN status     text NOT NULL DEFAULT 'active' CHECK (status IN ('invited', 'active')),
    ADD COLUMN teams      text[] NOT NULL DEFAULT '{}',
    ADD COLUMN invited_by text;

-- One invitation link per invited user: only the keyed hash of its token is kept.
CREATE TABLE berqenas.invitations (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL UNIQUE REFERENCES berqenas.tenant_users (id) ON DELETE CASCADE,
    tenant_id  uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
