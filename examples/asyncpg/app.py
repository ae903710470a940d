"""A 12-factor Python app on asyncpg: no TLS settings in code. `asyncpg.connect()` reads PGHOST,
PGPORT, PGDATABASE, PGUSER, PGPASSWORD (or PGPASSFILE), PGSSLMODE, PGSSLROOTCERT, PGSSLCERT,
PGSSLKEY and PGSSLCRL (not PGHOSTADDR, not PGSSLCRLDIR) and verifies with Python's ssl module.
Prints whether the session is encrypted; on failure, the error on stderr and exit 1. With
APP_AGAIN_AFTER=PATH it then waits for PATH to exist and connects once more, as an asyncpg pool
does for each new connection (`connect()` with the same arguments)."""

import asyncio
import os
import sys

import asyncpg


async def connect() -> None:
    conn = await asyncpg.connect()
    try:
        ssl = await conn.fetchval("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        print(str(ssl).lower(), flush=True)
    finally:
        await conn.close()


async def main() -> None:
    await connect()
    again = os.environ.get("APP_AGAIN_AFTER")
    if again:
        while not os.path.exists(again):
            await asyncio.sleep(0.05)
        await connect()


try:
    asyncio.run(main())
except Exception as e:  # the app's one line, as a 12-factor app logs it
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
