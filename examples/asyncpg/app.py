"""A 12-factor Python app on asyncpg: no TLS settings in code. `asyncpg.connect()` reads PGHOST,
PGPORT, PGDATABASE, PGUSER, PGPASSWORD (or PGPASSFILE), PGSSLMODE, PGSSLROOTCERT, PGSSLCERT,
PGSSLKEY and PGSSLCRL (not PGHOSTADDR, not PGSSLCRLDIR) and verifies with Python's ssl module.
Prints whether the session is encrypted; on failure, the error on stderr and exit 1."""

import asyncio
import sys

import asyncpg


async def main() -> None:
    conn = await asyncpg.connect()
    try:
        ssl = await conn.fetchval("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        print(str(ssl).lower())
    finally:
        await conn.close()


try:
    asyncio.run(main())
except Exception as e:  # the app's one line, as a 12-factor app logs it
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
