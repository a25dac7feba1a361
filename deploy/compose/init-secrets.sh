#!/bin/sh
# Generates every secret of deploy/compose.yaml once, into the `secrets` volume, and
# makes the backups volume berqenas's. A later `up` keeps them. For a development or
# evaluation stack: production keeps its secrets in a secret store.
set -eu
cd /secrets
rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
new() { [ -s "$1" ] || { printf '%s' "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }; }
new postgres-password "$(rand)"
new admin-token "$(rand)"
new secret-key "$(rand)"
new metrics-token "$(rand)"
new pgbouncer-auth-password "$(rand)"
new pgbouncer-admin-password "$(rand)"
new database-url "postgresql://berqenas:$(cat postgres-password)@postgres:5432/berqenas"
new pgbouncer-admin-url "postgresql://pgbouncer_admin:$(cat pgbouncer-admin-password)@pgbouncer:6432/pgbouncer"
new userlist.txt "\"berqenas_pgbouncer_auth\" \"$(cat pgbouncer-auth-password)\"
\"pgbouncer_admin\" \"$(cat pgbouncer-admin-password)\"
"
# Each service runs as its own user; the volume is mounted only where needed.
chmod 0444 ./*
chown 10001:10001 /backups && chmod 0700 /backups
echo "secrets ready; admin token: docker compose exec berqenas cat /run/berqenas-secrets/admin-token"
