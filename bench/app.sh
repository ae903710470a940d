#!/bin/sh
# The app every variant ends by exec'ing: one libpq connection with sslmode=verify-full from its
# environment, one query.
exec "$PG_BINDIR/psql" -XAtq -c 'select 1' >/dev/null
