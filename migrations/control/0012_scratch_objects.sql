-- Scratch objects: the throw-away roles, databases, schemas and files that backups,
-- restores and verifies create. Each is registered (committed) before it is created
-- and unregistered after it is dropped; while it is in use its lease is renewed. A
-- row whose lease has lapsed belongs to a process that died: the sweeper drops the
-- object (idempotently: it may never have been created) and then the row.
CREATE TABLE berqenas.scratch_objects (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('role', 'database', 'schema', 'file')),
    -- a role, database or schema name, or a file's absolute path
    name        text NOT NULL CHECK (name <> ''),
    -- schema: the database it is in; role: the database it can connect to (where it
    -- may own objects); else NULL
    database    text,
    lease_until timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (kind IN ('role', 'schema') OR database IS NULL),
    CHECK (kind <> 'schema' OR database IS NOT NULL),
    CHECK (kind <> 'file' OR name LIKE '/%')
);
CREATE INDEX scratch_objects_lease_idx ON berqenas.scratch_objects (lease_until);
CREATE INDEX scratch_objects_name_idx ON berqenas.scratch_objects (kind, name);

-- Tenants of the schema and shared modes connect to this database: none of them may
-- read or change the registry (the schema is closed to PUBLIC already; this keeps the
-- table closed should that ever change).
REVOKE ALL ON berqenas.scratch_objects FROM PUBLIC;
