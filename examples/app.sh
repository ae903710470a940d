#!/bin/sh
# A tiny app that uses nothing but the libpq environment the launcher gives it, and shows
# from the inside that its session is encrypted.
set -eu
psql=$(command -v "$(pg_config --bindir 2>/dev/null)/psql" || command -v psql)
exec "$psql" -XAt -c "select 'connected as ' || current_user || ' to ' || current_database()
  || ' on ' || '${PGHOST}:${PGPORT}' || ', ssl=' || ssl || ' version=' || version || ' cipher=' || cipher
  from pg_stat_ssl where pid = pg_backend_pid()"
