// A 12-factor Java app on pgjdbc: no TLS settings in code, only what the launcher gives it with
// --driver pgjdbc (JDBC_DATABASE_URL, JDBC_DATABASE_USERNAME, JDBC_DATABASE_PASSWORD or PGPASSFILE,
// the Heroku convention). Prints whether its session is encrypted; on failure, pgjdbc's error on
// stderr and exit 1.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;

public class App {
    public static void main(String[] args) {
        String url = System.getenv("JDBC_DATABASE_URL");
        try (Connection c = DriverManager.getConnection(url, System.getenv("JDBC_DATABASE_USERNAME"),
                System.getenv("JDBC_DATABASE_PASSWORD"));
             ResultSet r = c.createStatement().executeQuery(
                 "select ssl from pg_stat_ssl where pid = pg_backend_pid()")) {
            r.next();
            System.out.println(r.getBoolean(1));
        } catch (Exception e) {
            System.err.println(e.getMessage());
            System.exit(1);
        }
    }
}
