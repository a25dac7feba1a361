-- Runs of the tenant template across tenants. Per-tenant progress lives in
-- tenants.template_version (and, for database-mode tenants, a marker on their
-- database), so a run that dies can simply be run again.
CREATE TABLE berqenas.migration_runs (
    id              uuid PRIMARY KEY,
    state           text NOT NULL CHECK (state IN ('running','succeeded','failed','interrupted')),
    actor           text NOT NULL,
    target_version  integer NOT NULL,
    selector        jsonb NOT NULL,
    jobs            integer NOT NULL,
    canary          integer,
    total           integer NOT NULL DEFAULT 0,
    migrated        integer NOT NULL DEFAULT 0,
    already_current integer NOT NULL DEFAULT 0,
    failed          integer NOT NULL DEFAULT 0,
    not_attempted   integer NOT NULL DEFAULT 0,
    report          jsonb NOT NULL DEFAULT '{}',
    error           text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    lease_until     timestamptz NOT NULL
);
-- One run at a time per control plane: a second start is refused, not interleaved.
CREATE UNIQUE INDEX migration_runs_one_running ON berqenas.migration_runs ((true)) WHERE state = 'running';
