-- Tenant users (seed 001 section 4.1): login roles that are members of one of the
-- tenant's default group roles. Their passwords are sealed (AES-256-GCM).

CREATE TABLE berqenas.tenant_users (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    -- stored lower-cased, so one address is one user
    email       text NOT NULL,
    role        text NOT NULL CHECK (role IN ('tenant_admin', 'application_manager', 'developer', 'auditor')),
    db_user     text NOT NULL UNIQUE,
    credentials bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, email)
);
