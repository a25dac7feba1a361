#!/bin/sh
# Secrets from files: BERQENAS_<NAME>_FILE=/path sets BERQENAS_<NAME> to the file's
# contents (trailing newline dropped), for Docker and Kubernetes secrets mounted as
# files. Setting both is refused: which one wins would be a guess.
set -eu
for name in DATABASE_URL ADMIN_TOKEN SECRET_KEY METRICS_TOKEN PGBOUNCER_ADMIN_URL; do
  var="BERQENAS_${name}"
  file_var="${var}_FILE"
  eval "file=\${${file_var}:-}"
  if [ -n "$file" ]; then
    eval "given=\${${var}:-}"
    if [ -n "$given" ]; then
      echo "berqenas: both ${var} and ${file_var} are set; set one" >&2
      exit 64
    fi
    if [ ! -r "$file" ]; then
      echo "berqenas: ${file_var}=${file} is not readable" >&2
      exit 66
    fi
    value=$(cat "$file")
    export "${var}=${value}"
    unset "${file_var}"
  fi
done
# In a container the data directory does not outlive the instance, and instances must
# share the key that seals credentials and the admin token: generating them there
# would lose them (and give every replica its own).
if [ "${1:-}" = "serve" ]; then
  for name in SECRET_KEY ADMIN_TOKEN DATABASE_URL; do
    eval "given=\${BERQENAS_${name}:-}"
    if [ -z "$given" ]; then
      echo "berqenas: set BERQENAS_${name} or BERQENAS_${name}_FILE (see docs/deploy.md)" >&2
      exit 64
    fi
  done
fi
exec "${BERQENAS_BIN:-/usr/local/bin/berqenas}" "$@"
