-- The admin console of the PgBouncer in front of a server other than `default`
-- (docs/servers.md): a suspension of a tenant there asks it to drop the clients it
-- pools for the tenant, as `--pgbouncer-admin-url` does for `default`. The URL
-- carries the console's password: sealed with the server's key, as `url_sealed`.
-- NULL: no console known (PostgreSQL's termination alone, as before).
ALTER TABLE berqenas.servers ADD COLUMN pgbouncer_admin_sealed bytea;
