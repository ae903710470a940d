#!/bin/sh
# The same with the bao CLI, one field at a time (`bao kv get -field=…`), as its docs show.
set -eu
bao=$BAO
dir=$(mktemp -d)
"$bao" kv get -mount=secret -field=ca_pem app/db > "$dir/root.crt"
PGHOST=$("$bao" kv get -mount=secret -field=host app/db)
PGPORT=$("$bao" kv get -mount=secret -field=port app/db)
PGUSER=$("$bao" kv get -mount=secret -field=username app/db)
PGPASSWORD=$("$bao" kv get -mount=secret -field=password app/db)
PGDATABASE=$("$bao" kv get -mount=secret -field=dbname app/db)
PGSSLMODE=verify-full
PGSSLROOTCERT=$dir/root.crt
export PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE PGSSLROOTCERT
"$PG_BINDIR/psql" -XAtq -c 'select 1' >/dev/null
unset VAULT_TOKEN
exec "$@"
