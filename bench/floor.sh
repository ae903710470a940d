#!/bin/sh
# The floor: one curl for the secret, then the app's own connection; no check, nothing else.
set -eu
json=$(curl -sf -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/secret/data/app/db")
dir=$(mktemp -d)
printf '%s' "$json" | jq -r .data.data.ca_pem > "$dir/root.crt"
eval "$(printf '%s' "$json" | jq -r '.data.data | "export PGHOST=\(.host|@sh) PGPORT=\(.port|tostring|@sh) PGUSER=\(.username|@sh) PGPASSWORD=\(.password|@sh) PGDATABASE=\(.dbname|@sh)"')"
export PGSSLMODE=verify-full PGSSLROOTCERT="$dir/root.crt"
exec "$@"
