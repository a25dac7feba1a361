-- Issue 18: the PostgreSQL servers tenants are placed on (docs/servers.md). The server
-- berqenas starts with (embedded, or --database-url) is `default`; it keeps the
-- control database and has no URL of its own here. Every other server's URL carries
-- its credentials and is stored sealed with the server's secret key, like webhook
-- secrets; only its host, port and database are kept in the clear (to show).
CREATE TABLE berqenas.servers (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,30}[a-z0-9]$'),
    url_sealed    bytea,
    host          text NOT NULL DEFAULT '',
    port          integer NOT NULL DEFAULT 0,
    database_name text NOT NULL DEFAULT '',
    labels        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    draining      boolean NOT NULL DEFAULT false,
    -- Why the last check could not reach it (NULL: up).
    down_reason   text,
    version       text,
    checked_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((name = 'default') = (url_sealed IS NULL))
);
INSERT INTO berqenas.servers (name) VALUES ('default');

-- Which server a tenant lives on. A server with tenants cannot be removed.
ALTER TABLE berqenas.tenants
    ADD COLUMN server text NOT NULL DEFAULT 'default'
        REFERENCES berqenas.servers (name) ON UPDATE RESTRICT ON DELETE RESTRICT;
CREATE INDEX tenants_server_idx ON berqenas.tenants (server);
