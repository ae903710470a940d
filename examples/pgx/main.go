// A 12-factor Go app on pgx: no TLS settings in code, only the environment the launcher builds
// (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD or PGPASSFILE, PGSSLMODE, PGSSLROOTCERT).
// It prints whether its session is encrypted; on failure, pgx's error on stderr and exit 1.
// With APP_AGAIN_AFTER=PATH it then waits for PATH to exist and connects once more with the same
// parsed configuration, as a pool (pgxpool) does for each new connection.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v4"
)

func connect(ctx context.Context, config *pgx.ConnConfig) {
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close(ctx)
	var ssl bool
	if err := conn.QueryRow(ctx, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ssl)
}

func main() {
	ctx := context.Background()
	config, err := pgx.ParseConfig("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	connect(ctx, config)
	if again := os.Getenv("APP_AGAIN_AFTER"); again != "" {
		for _, err := os.Stat(again); err != nil; _, err = os.Stat(again) {
			time.Sleep(50 * time.Millisecond)
		}
		connect(ctx, config)
	}
}
