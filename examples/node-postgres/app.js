// A 12-factor Node app on node-postgres: no TLS settings in code. `new Client()` reads PGHOST,
// PGPORT, PGDATABASE, PGUSER, PGPASSWORD (or PGPASSFILE) and PGSSLMODE; Node's TLS trusts its
// bundled roots plus NODE_EXTRA_CA_CERTS, which the launcher sets (node-postgres ignores
// PGSSLROOTCERT). Prints whether the session is encrypted; on failure, the error on stderr, exit 1.
const { Client } = require('pg');

(async () => {
  const client = new Client();
  try {
    await client.connect();
    const { rows } = await client.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
    console.log(String(rows[0].ssl));
    await client.end();
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
})();
