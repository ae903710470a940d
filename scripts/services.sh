# Local services as users run them, for scripts/demo and bench/run: PostgreSQL with TLS set up the
# seed article's way (a self-signed RSA-4096 certificate from `openssl req -x509`, CN only;
# ssl = on; hostssl + scram-sha-256 only) and an OpenBao dev server whose secret/app/db holds the
# credentials and that certificate as the CA. Source it, then call services_start DIR.
# Exports PG_PORT, PG_BINDIR, PG_SOCKET, VAULT_ADDR, VAULT_TOKEN; services_stop stops both.

services_start() {
  SVC_DIR=$1
  local max_connections=${2:-100}
  rm -rf "$SVC_DIR" && mkdir -p "$SVC_DIR" && chmod 711 "$SVC_DIR"
  SVC_AS_PG=()
  if [ "$(id -u)" -eq 0 ]; then SVC_AS_PG=(runuser -u postgres --); fi
  PG_BINDIR=$(pg_config --bindir)
  local free_port='import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  PG_PORT=$(python3 -c "$free_port")
  local bao_port
  bao_port=$(python3 -c "$free_port")
  PG_SOCKET=$SVC_DIR/sock
  SVC_PIDS=()

  mkdir -p "$SVC_DIR/ssl"
  openssl req -newkey rsa:4096 -nodes -keyout "$SVC_DIR/ssl/server.key" -x509 -days 365 \
    -out "$SVC_DIR/ssl/server.crt" -subj "/CN=localhost" 2>/dev/null
  chmod 600 "$SVC_DIR/ssl/server.key"
  mkdir -p "$SVC_DIR/data" "$PG_SOCKET" && chmod 700 "$SVC_DIR/data"
  if [ ${#SVC_AS_PG[@]} -gt 0 ]; then chown -R postgres: "$SVC_DIR/ssl" "$SVC_DIR/data" "$PG_SOCKET"; fi
  "${SVC_AS_PG[@]}" "$PG_BINDIR/initdb" -D "$SVC_DIR/data" -U postgres --auth=trust --no-sync >/dev/null
  cat >> "$SVC_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET'
max_connections = $max_connections
ssl = on
ssl_cert_file = '$SVC_DIR/ssl/server.crt'
ssl_key_file = '$SVC_DIR/ssl/server.key'
password_encryption = 'scram-sha-256'
CONF
  printf 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n' > "$SVC_DIR/data/pg_hba.conf"
  touch "$SVC_DIR/pg.log"
  if [ ${#SVC_AS_PG[@]} -gt 0 ]; then chown postgres: "$SVC_DIR/pg.log"; fi
  "${SVC_AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$SVC_DIR/data" -l "$SVC_DIR/pg.log" -w start >/dev/null
  local password
  password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
  # The password goes to psql on stdin, never on a command line.
  printf "CREATE ROLE app LOGIN PASSWORD '%s'; CREATE DATABASE prod OWNER app;\n" "$password" |
    "$PG_BINDIR/psql" -X -q -h "$PG_SOCKET" -p "$PG_PORT" -U postgres -d postgres -f - >/dev/null

  HOME=$SVC_DIR "$(dirname "${BASH_SOURCE[0]}")/../.venv/bin/bao" server -dev -dev-root-token-id=local-root \
    -dev-listen-address="127.0.0.1:$bao_port" >"$SVC_DIR/bao.log" 2>&1 &
  SVC_PIDS+=($!)
  export VAULT_ADDR="http://127.0.0.1:$bao_port" VAULT_TOKEN=local-root PG_PORT PG_BINDIR PG_SOCKET
  for _ in $(seq 100); do curl -sf "$VAULT_ADDR/v1/sys/health" >/dev/null && break; sleep 0.1; done
  python3 - "$SVC_DIR/ssl/server.crt" "$PG_PORT" <<PY | curl -sf -H "X-Vault-Token: $VAULT_TOKEN" -d @- "$VAULT_ADDR/v1/secret/data/app/db" >/dev/null
import json, sys
print(json.dumps({"data": {"username": "app", "password": """$password""", "host": "localhost",
    "port": int(sys.argv[2]), "dbname": "prod", "ca_pem": open(sys.argv[1]).read()}}))
PY
}

services_stop() {
  if [ -f "$SVC_DIR/data/postmaster.pid" ]; then
    "${SVC_AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$SVC_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  for p in "${SVC_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
