#!/bin/sh
# What users write today: curl + jq for the secret, a psql check, then exec.
set -eu
json=$(curl -sf -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/secret/data/app/db")
dir=$(mktemp -d)
printf '%s' "$json" | jq -r .data.data.ca_pem > "$dir/root.crt"
PGHOST=$(printf '%s' "$json" | jq -r .data.data.host)
PGPORT=$(printf '%s' "$json" | jq -r .data.data.port)
PGUSER=$(printf '%s' "$json" | jq -r .data.data.username)
PGPASSWORD=$(printf '%s' "$json" | jq -r .data.data.password)
PGDATABASE=$(printf '%s' "$json" | jq -r .data.data.dbname)
PGSSLMODE=verify-full
PGSSLROOTCERT=$dir/root.crt
export PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE PGSSLROOTCERT
"$PG_BINDIR/psql" -XAtq -c 'select 1' >/dev/null
unset VAULT_TOKEN
exec "$@"
