-- Backups, backup policies and offboarding (soft delete, purge, restore).

-- One row per backup. The object itself lives in the backup store (a directory by
-- default); `location` is its key there. A failed backup keeps its row and error, so
-- failures stay countable: SELECT count(*) FROM berqenas.backups WHERE status = 'failed'.
CREATE TABLE berqenas.backups (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    tenant_name  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('manual', 'scheduled', 'final')),
    status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'expired')),
    isolation    text NOT NULL CHECK (isolation IN ('schema', 'database', 'shared')),
    encrypted    boolean NOT NULL,
    location     text,
    size_bytes   bigint,
    sha256       text,
    -- what `verify` compares with, the template version, the server version, the
    -- sealed data key: everything but the data
    manifest     jsonb,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    -- the worker deletes the object after this moment (NULL: kept)
    expires_at   timestamptz
);
CREATE INDEX backups_tenant_idx ON berqenas.backups (tenant_id, created_at DESC);
CREATE INDEX backups_expiry_idx ON berqenas.backups (expires_at) WHERE status = 'succeeded';

-- A tenant's backup policy: the worker takes a backup when next_run_at has passed.
CREATE TABLE berqenas.backup_policies (
    tenant_id      uuid PRIMARY KEY REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    schedule       text NOT NULL,
    retention_days integer NOT NULL CHECK (retention_days BETWEEN 1 AND 3650),
    encryption     boolean NOT NULL DEFAULT true,
    next_run_at    timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backup_policies_due_idx ON berqenas.backup_policies (next_run_at);

-- The policy a plan's new tenants get when their request names none.
CREATE TABLE berqenas.plan_backup_policies (
    plan           text PRIMARY KEY REFERENCES berqenas.plans (name) ON DELETE CASCADE,
    schedule       text NOT NULL,
    retention_days integer NOT NULL CHECK (retention_days BETWEEN 1 AND 3650),
    encryption     boolean NOT NULL DEFAULT true
);
INSERT INTO berqenas.plan_backup_policies VALUES
    ('professional', '0 3 * * *', 30, true),
    ('enterprise',   '0 3 * * *', 90, true),
    ('custom',       '0 3 * * *', 90, true);

-- A soft-deleted (or purged) tenant: what it was before, so a restore brings exactly
-- that back, and when the worker purges it. `pending` while the final backup runs.
CREATE TABLE berqenas.offboarding (
    tenant_id       uuid PRIMARY KEY REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    state           text NOT NULL CHECK (state IN ('pending', 'deleted', 'purged')),
    previous_status text NOT NULL CHECK (previous_status IN ('trial', 'active', 'suspended')),
    -- the login roles that could log in and were switched off
    disabled_roles  text[] NOT NULL,
    final_backup_id uuid REFERENCES berqenas.backups (id) ON DELETE SET NULL,
    deleted_at      timestamptz NOT NULL DEFAULT now(),
    purge_after     timestamptz NOT NULL,
    purged_at       timestamptz,
    actor           text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offboarding_purge_idx ON berqenas.offboarding (purge_after) WHERE state = 'deleted';
