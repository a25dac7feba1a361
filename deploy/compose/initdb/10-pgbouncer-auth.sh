#!/bin/sh
# First start of the database: the login role PgBouncer's auth_query runs as. berqenas
# installs the lookup function it may execute (--pgbouncer-auth-user).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pw="$(cat /run/berqenas-secrets/pgbouncer-auth-password)" <<'SQL'
CREATE ROLE berqenas_pgbouncer_auth LOGIN PASSWORD :'pw';
SQL
