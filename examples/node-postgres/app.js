// A 12-factor Node app on node-postgres: no TLS settings in code. `new Client()` reads PGHOST,
// PGPORT, PGDATABASE, PGUSER, PGPASSWORD (or PGPASSFILE) and PGSSLMODE; Node's TLS trusts its
// bundled roots plus NODE_EXTRA_CA_CERTS, which the launcher sets (node-postgres ignores
// PGSSLROOTCERT). Prints whether the session is encrypted; on failure, the error on stderr, exit 1.
// With APP_AGAIN_AFTER=PATH it then waits for PATH to exist and connects once more, as a
// pg.Pool does for each new connection (a new Client with the pool's options).
const fs = require('fs');
const { Client } = require('pg');

async function connect() {
  const client = new Client();
  await client.connect();
  const { rows } = await client.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
  console.log(String(rows[0].ssl));
  await client.end();
}

(async () => {
  try {
    await connect();
    const again = process.env.APP_AGAIN_AFTER;
    if (again) {
      while (!fs.existsSync(again)) await new Promise((r) => setTimeout(r, 50));
      await connect();
    }
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
})();
