//! How the password reaches the app: PGPASSWORD, a .pgpass file, and a DATABASE_URL whose
//! percent-encoding libpq, tokio-postgres and Python's URL parser all read back the same way.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::support::{self, Run, bao::ROOT_TOKEN, launcher, pg::psql, services, unique};

/// A role whose password has every character that needs escaping in a URL and in .pgpass.
fn awkward_role() -> (String, String, PathBuf, String) {
    let s = services();
    let role = unique("url");
    let password = format!("p@ss:w/rd?#%+é\\{}", unique("x"));
    s.pg.create_role(&role, &password);
    let path = format!("delivery/{role}");
    s.bao.put_kv2(
        &path,
        &serde_json::json!({"username": role, "password": password, "host": "localhost", "port": s.pg.port,
            "dbname": "postgres", "ca_pem": std::fs::read_to_string(&s.certs.ca).unwrap()}),
    );
    (role.clone(), password, support::home(&role), path)
}

fn launch(home: &std::path::Path, path: &str) -> std::process::Command {
    launch_sub(home, path, &[])
}

/// The launcher with `subcommand` (if any) before the source options.
fn launch_sub(home: &std::path::Path, path: &str, subcommand: &[&str]) -> std::process::Command {
    let mut c = launcher(home);
    c.env("VAULT_ADDR", &services().bao.addr).env("VAULT_TOKEN", ROOT_TOKEN).args(subcommand).args([
        "--credentials",
        &format!("vault:secret/{path}"),
        "--ca",
        &format!("vault:secret/{path}#ca_pem"),
    ]);
    c
}

#[test]
fn passfile_mode_gives_pgpassfile_and_no_pgpassword() {
    let (_, password, home, path) = awkward_role();
    let script = format!(
        "echo \"PGPASSWORD=${{PGPASSWORD-unset}}\"; echo \"PGPASSFILE=$PGPASSFILE\"; echo \"URL=$DATABASE_URL\"; \
         stat -c %a \"$PGPASSFILE\"; {} -XAtc 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'",
        psql().display()
    );
    let run = Run::of(launch(&home, &path).env("PGPASSWORD", "inherited-and-wrong").args([
        "--password-via",
        "passfile",
        "--database-url",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    run.assert_ok().assert_no_leak(&password);
    assert!(run.stdout.contains("PGPASSWORD=unset\n"), "no password in the environment: {run}");
    assert!(run.stdout.contains("\n600\nt\n"), "a 0600 .pgpass, and libpq connects with it: {run}");
    let passfile = run.stdout.lines().find_map(|l| l.strip_prefix("PGPASSFILE=")).unwrap();
    assert!(passfile.ends_with("/.pgpass"), "{run}");
    let url = run.stdout.lines().find_map(|l| l.strip_prefix("URL=")).unwrap();
    assert!(url.starts_with("postgresql://url_") && url.contains("@localhost:"), "no password in the URL: {url}");
    let dir_mode = std::fs::metadata(PathBuf::from(passfile).parent().unwrap()).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}

#[test]
fn database_url_round_trips_through_libpq_python_and_tokio_postgres() {
    let (role, password, home, path) = awkward_role();
    // libpq with nothing but the URL; Python's parser compares with PGPASSWORD inside the app.
    let script = format!(
        "python3 -c 'import os, urllib.parse as u; p = u.urlsplit(os.environ[\"MY_URL\"]); \
         print(\"python\", u.unquote(p.password) == os.environ[\"PGPASSWORD\"], u.unquote(p.username))'; \
         url=$MY_URL; unset PGPASSWORD PGHOST PGPORT PGUSER PGDATABASE PGSSLMODE PGSSLROOTCERT MY_URL; \
         {} \"$url\" -XAtc 'select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()'",
        psql().display()
    );
    let run = Run::of(launch(&home, &path).args(["--database-url", "MY_URL", "--", "sh", "-c", &script]));
    run.assert_ok().assert_no_leak(&password);
    assert!(run.stdout.contains(&format!("python True {role}\n")), "{run}");
    assert!(run.stdout.contains(&format!("{role}|t\n")), "libpq connected with the URL alone: {run}");

    // tokio-postgres parses the same URL (revealed on purpose, to parse it here).
    let run =
        Run::of(launch_sub(&home, &path, &["env"]).args(["--format", "json", "--reveal", "--database-url", "MY_URL"]));
    run.assert_ok();
    let env: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let url = env["MY_URL"].as_str().unwrap();
    // tokio-postgres knows no sslmode beyond `require` and refuses the URL's verify-full (the
    // README says so): its apps configure TLS in code. The encoded parts still round-trip.
    let refused = tokio_postgres::Config::from_str(url).unwrap_err();
    assert!(format!("{refused:?}").contains("sslmode"), "{refused:?}");
    let config = tokio_postgres::Config::from_str(url.split_once('?').unwrap().0).unwrap();
    assert_eq!(config.get_password(), Some(password.as_bytes()));
    assert_eq!(config.get_user(), Some(role.as_str()));
    assert_eq!(config.get_dbname(), Some("postgres"));
    let redacted = Run::of(launch_sub(&home, &path, &["env"]).arg("--database-url"));
    redacted.assert_ok().assert_no_leak(&password);
    assert!(redacted.stdout.contains("export DATABASE_URL='<redacted>'"), "{redacted}");
}
