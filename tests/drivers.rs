//! Issue 15: the app's driver decides. Real pgx, rustls, asyncpg, pgjdbc and node-postgres apps
//! (examples/) behind the launcher either connect with TLS or the launcher refuses before they
//! run; the seed article's certificate is flagged for Go and Rust apps even when no driver is
//! named. (The oracle compares each `--driver` with the driver itself on every certificate case.)

use crate::support::drivers::{asyncpg_app, node_app, pgjdbc_app, pgx_app, rustls_app};
use crate::support::{self, Fixture, Pg, Run, canary, launcher, services, unique};

#[test]
fn a_pgx_app_connects_with_verify_full_from_the_launchers_environment_alone() {
    let f = Fixture::new();
    let run = Run::of(f.launcher().args(["--driver", "pgx", "--"]).arg(pgx_app()));
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "true", "pgx's session is encrypted: {run}");
    assert!(!run.stderr.contains("would refuse"), "{run}");
}

#[test]
fn the_seed_articles_certificate_is_flagged_for_go_and_rust_and_refused_for_their_apps() {
    let s = services();
    let dir = s.root.join(unique("seed-cert"));
    std::fs::create_dir_all(&dir).unwrap();
    // `openssl req -x509` as the article does: CA:TRUE, CN only, its own root.
    let (cert, key) = support::certs::self_signed_ca(&dir, "seed", "localhost");
    let pg = Pg::start_with(&dir.join("pg"), &cert, &key, true);
    let role = unique("seed");
    let password = canary();
    pg.create_role(&role, &password);
    let home = support::home(&role);
    let libpq_env = |cmd: &mut std::process::Command| {
        cmd.env("PGHOST", "localhost")
            .env("PGPORT", pg.port.to_string())
            .env("PGUSER", &role)
            .env("PGPASSWORD", &password)
            .env("PGDATABASE", "postgres")
            .env("PGSSLROOTCERT", &cert);
    };
    let mut check = launcher(&home);
    libpq_env(&mut check);
    let run = Run::of(check.args(["check", "--output", "json"]));
    run.assert_ok().assert_no_leak(&password);
    let warning = "pgx (Go) would refuse the server: x509: certificate relies on legacy Common Name field, use SANs \
                   instead; Go ignores the CN: re-issue the certificate with subjectAltName DNS:localhost";
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(report["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().starts_with(warning)), "{run}");
    let mut launch = launcher(&home);
    libpq_env(&mut launch);
    let run = Run::of(launch.args(["--driver", "pgx", "--"]).arg(pgx_app()));
    run.assert_fails(76, warning).assert_no_leak(&password);
    assert_eq!(run.stdout, "", "the app must not run: {run}");
    // What pgx itself says with the same environment.
    let mut direct = std::process::Command::new(pgx_app());
    libpq_env(&mut direct);
    let out = direct.env("PGSSLMODE", "verify-full").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("x509: certificate relies on legacy Common Name field"));
    // libpq's apps are fine with it, as libpq is.
    let mut libpq = launcher(&home);
    libpq_env(&mut libpq);
    Run::of(libpq.args(["--driver", "libpq", "--", "true"])).assert_ok();
    // And for Rust: rustls refuses a CA:TRUE certificate as the server's.
    let warning = "rustls would refuse the server: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity)); \
                   rustls refuses a CA certificate (basicConstraints CA:TRUE) as the server's";
    assert!(
        report["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().starts_with(warning)),
        "{report}"
    );
    let mut launch = launcher(&home);
    libpq_env(&mut launch);
    let run = Run::of(launch.args(["--driver", "rustls", "--"]).arg(rustls_app().get_program()));
    run.assert_fails(76, warning).assert_no_leak(&password);
    assert_eq!(run.stdout, "", "the app must not run: {run}");
    let mut direct = rustls_app();
    libpq_env(&mut direct);
    let out = direct.output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("CaUsedAsEndEntity"), "rustls itself refuses it");
}

#[test]
fn an_asyncpg_app_connects_and_a_crl_it_cannot_read_is_refused_first() {
    let f = Fixture::new();
    let run = Run::of(
        f.launcher()
            .args(["--driver", "asyncpg", "--"])
            .arg(asyncpg_app().get_program())
            .args(asyncpg_app().get_args()),
    );
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "true", "asyncpg's session is encrypted: {run}");
    // libpq skips a PGSSLCRL that names no file; asyncpg raises, so the launcher refuses.
    let missing = f.home.join("no-such.crl");
    let run = Run::of(
        f.launcher()
            .env("PGSSLCRL", &missing)
            .args(["--driver", "asyncpg", "--"])
            .arg(asyncpg_app().get_program())
            .args(asyncpg_app().get_args()),
    );
    run.assert_fails(76, "asyncpg (Python's ssl) would refuse the server: FileNotFoundError")
        .assert_no_leak(&f.password);
    assert_eq!(run.stdout, "", "the app must not run: {run}");
    // What asyncpg itself does behind a launcher that judges for libpq only.
    let run = Run::of(
        f.launcher()
            .env("PGSSLCRL", &missing)
            .arg("--")
            .arg(asyncpg_app().get_program())
            .args(asyncpg_app().get_args()),
    );
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("FileNotFoundError"), "asyncpg itself fails: {run}");
}

#[test]
fn a_rustls_app_connects_from_the_launchers_environment_alone() {
    let f = Fixture::new();
    let run = Run::of(f.launcher().args(["--driver", "rustls", "--"]).arg(rustls_app().get_program()));
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "true", "rustls's session is encrypted: {run}");
    assert!(!run.stderr.contains("would refuse"), "{run}");
}

#[test]
fn pgx_with_pghostaddr_is_refused_before_anything_is_fetched() {
    let f = Fixture::new();
    let run = Run::of(f.launcher().env("PGHOSTADDR", "127.0.0.1").args(["--driver", "libpq,pgx", "--", "true"]));
    run.assert_fails(78, "PGHOSTADDR: pgx ignores it and dials PGHOST").assert_no_leak(&f.password);
    assert!(!run.stderr.contains("credentials from"), "nothing fetched: {run}");
}

#[test]
fn a_pgjdbc_app_gets_a_verify_full_url_and_connects_with_tls() {
    let f = Fixture::new();
    // pgjdbc reads no PG* variable: without --driver pgjdbc it would have nothing to connect with.
    let app = pgjdbc_app();
    let program = |c: &mut std::process::Command| {
        c.arg(app.get_program()).args(app.get_args());
    };
    let mut cmd = f.launcher();
    cmd.args(["--driver", "pgjdbc", "--"]);
    program(&mut cmd);
    let run = Run::of(&mut cmd);
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "true", "{run}");
    // With the password in the .pgpass (which pgjdbc reads through PGPASSFILE), none in the env.
    let mut cmd = f.launcher();
    cmd.args(["--driver", "pgjdbc", "--password-via", "passfile", "--"]);
    program(&mut cmd);
    let run = Run::of(&mut cmd);
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "true", "{run}");
    let mut env = launcher(&f.home);
    env.env("VAULT_ADDR", &services().bao.addr).env("VAULT_TOKEN", crate::support::bao::ROOT_TOKEN);
    let run = Run::of(env.args(["env", "--credentials", &f.credentials(), "--ca", &f.ca(), "--driver", "pgjdbc"]));
    run.assert_ok().assert_no_leak(&f.password);
    let port = services().pg.port;
    assert!(
        run.stdout.contains(&format!(
            "export JDBC_DATABASE_URL='jdbc:postgresql://localhost:{port}/postgres?sslmode=verify-full&sslrootcert="
        )),
        "{run}"
    );
    assert!(run.stdout.contains(&format!("export JDBC_DATABASE_USERNAME='{}'", f.role)), "{run}");
    assert!(run.stdout.contains("export JDBC_DATABASE_PASSWORD='<redacted>'"), "{run}");
}

#[test]
fn a_node_postgres_app_trusts_the_ca_through_node_extra_ca_certs_and_keeps_an_inherited_one() {
    let s = services();
    let f = Fixture::new();
    let app = node_app();
    let launch = |extra: Option<&std::path::Path>| {
        let mut cmd = f.launcher();
        if let Some(extra) = extra {
            cmd.env("NODE_EXTRA_CA_CERTS", extra);
        }
        cmd.args(["--driver", "node-postgres", "--"]).arg(app.get_program()).args(app.get_args());
        Run::of(&mut cmd)
    };
    // node-postgres ignores PGSSLROOTCERT: without NODE_EXTRA_CA_CERTS it would not trust the CA.
    let run = launch(None);
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "true", "{run}");
    // An inherited bundle stays trusted: the app gets both, in a file of the launcher's.
    let run = launch(Some(&s.certs.other_ca));
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "true", "{run}");
    let mut env = launcher(&f.home);
    env.env("VAULT_ADDR", &s.bao.addr)
        .env("VAULT_TOKEN", crate::support::bao::ROOT_TOKEN)
        .env("NODE_EXTRA_CA_CERTS", &s.certs.other_ca);
    let run =
        Run::of(env.args(["env", "--credentials", &f.credentials(), "--ca", &f.ca(), "--driver", "node-postgres"]));
    run.assert_ok();
    let bundle = run.stdout.lines().find_map(|l| l.strip_prefix("export NODE_EXTRA_CA_CERTS='")).unwrap();
    let bundle = std::fs::read_to_string(bundle.trim_end_matches('\'')).unwrap();
    let other = std::fs::read_to_string(&s.certs.other_ca).unwrap();
    let ours = std::fs::read_to_string(&s.certs.ca).unwrap();
    assert!(bundle.contains(other.trim()) && bundle.contains(ours.trim()), "both CAs in the bundle");
}

#[test]
fn asyncpg_reads_a_pgpass_escape_as_written_so_a_password_with_a_colon_is_refused_for_it() {
    // The canary password holds ':' (escaped as `\:` in the .pgpass, as libpq reads it).
    let f = Fixture::new();
    assert!(f.password.contains(':'));
    // asyncpg itself, given that file: the escape reaches the server with the password.
    let run = Run::of(
        f.launcher()
            .args(["--password-via", "passfile", "--"])
            .arg(asyncpg_app().get_program())
            .args(asyncpg_app().get_args()),
    );
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("InvalidPasswordError: password authentication failed"), "{run}");
    run.assert_no_leak(&f.password);
    // Named as the app's driver, the launcher refuses before the app starts.
    let mut named = f.launcher();
    named.args(["--password-via", "passfile", "--driver", "asyncpg", "--"]).arg(asyncpg_app().get_program());
    let run = Run::of(named.args(asyncpg_app().get_args()));
    run.assert_fails(
        65,
        "the password holds ':' or '\\', which asyncpg reads from a .pgpass with the escape still in it",
    )
    .assert_no_leak(&f.password);
    // Through PGPASSWORD it connects.
    let mut env = f.launcher();
    env.args(["--driver", "asyncpg", "--"]).arg(asyncpg_app().get_program());
    let run = Run::of(env.args(asyncpg_app().get_args()));
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "true", "{run}");
}

#[test]
fn a_tokio_postgres_app_given_a_passfile_is_warned_about_it_has_no_password() {
    let f = Fixture::new();
    let mut cmd = f.launcher();
    cmd.args(["--password-via", "passfile", "--driver", "rustls", "--"]).arg(rustls_app().get_program());
    let run = Run::of(&mut cmd);
    // tokio-postgres itself, with only PGPASSFILE: no password to send.
    assert_ne!(run.code, 0, "{run}");
    assert!(run.stderr.contains("password missing"), "{run}");
    assert!(run.stderr.contains("apps on tokio-postgres read no .pgpass and get no password"), "{run}");
    run.assert_no_leak(&f.password);
}
