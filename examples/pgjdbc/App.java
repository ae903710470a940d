// A 12-factor Java app on pgjdbc: no TLS settings in code, only what the launcher gives it with
// --driver pgjdbc (JDBC_DATABASE_URL, JDBC_DATABASE_USERNAME, JDBC_DATABASE_PASSWORD or PGPASSFILE,
// the Heroku convention). Prints whether its session is encrypted; on failure, pgjdbc's error on
// stderr and exit 1. With APP_AGAIN_AFTER=PATH it then waits for PATH to exist and connects once
// more with the same URL and properties, as a pool (HikariCP) does for each new connection.
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;

public class App {
    static void connect(String url) throws Exception {
        try (Connection c = DriverManager.getConnection(url, System.getenv("JDBC_DATABASE_USERNAME"),
                System.getenv("JDBC_DATABASE_PASSWORD"));
             ResultSet r = c.createStatement().executeQuery(
                 "select ssl from pg_stat_ssl where pid = pg_backend_pid()")) {
            r.next();
            System.out.println(r.getBoolean(1));
        }
    }

    public static void main(String[] args) {
        String url = System.getenv("JDBC_DATABASE_URL");
        String again = System.getenv("APP_AGAIN_AFTER");
        try {
            connect(url);
            if (again != null) {
                while (!Files.exists(Path.of(again))) {
                    Thread.sleep(50);
                }
                connect(url);
            }
        } catch (Exception e) {
            System.err.println(e.getMessage());
            System.exit(1);
        }
    }
}
