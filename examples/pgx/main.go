// A 12-factor Go app on pgx: no TLS settings in code, only the environment the launcher builds
// (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD or PGPASSFILE, PGSSLMODE, PGSSLROOTCERT).
// It prints whether its session is encrypted; on failure, pgx's error on stderr and exit 1.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v4"
)

func main() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "")
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
