-- PgBouncer's auth_query (berqenas_pgbouncer.user_lookup) looks a login role's tenant
-- up at every new client connection through the pooler: by index, not by a scan.
CREATE INDEX tenants_login_role_idx ON berqenas.tenants (login_role);
