//! `launcher check` as a user points it at an existing set-up: libpq's own environment only,
//! the report (human and JSON), expiry warnings, channel binding, `.pgpass`, and `--wait`.

pub mod hosts;
mod newer_libpq;
mod wire;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Pg, Run, canary, launcher, services, unique};

/// A role, and the libpq environment that reaches the shared server as it (no password set).
pub fn libpq_env(home: &Path) -> (Command, String, String) {
    let s = services();
    let role = unique("chk");
    let password = canary();
    s.pg.create_role(&role, &password);
    (launcher_for(home, s.pg.port, &role), role, password)
}

/// The launcher with libpq's environment for an existing `role` at `port`, without a password.
pub fn launcher_for(home: &Path, port: u16, role: &str) -> Command {
    let mut cmd = launcher(home);
    cmd.env("PGHOST", "localhost")
        .env("PGPORT", port.to_string())
        .env("PGUSER", role)
        .env("PGDATABASE", "postgres")
        .env("PGSSLROOTCERT", &services().certs.ca);
    cmd
}

/// [`launcher_for`], with `password` in PGPASSWORD.
pub fn launcher_as(home: &Path, port: u16, role: &str, password: &str) -> Command {
    let mut cmd = launcher_for(home, port, role);
    cmd.env("PGPASSWORD", password);
    cmd
}

/// The JSON report of a `check --output json` run.
pub fn report(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"))
}

#[test]
fn check_needs_nothing_but_libpq_variables_and_reports_in_json() {
    let home = support::home(&unique("chk-home"));
    let (mut cmd, role, password) = libpq_env(&home);
    let run = Run::of(cmd.env("PGPASSWORD", &password).env("PGSSLMODE", "require").args(["check", "--output", "json"]));
    run.assert_ok().assert_no_leak(&password);
    assert!(run.stderr.contains("overriding inherited PGSSLMODE=require with verify-full"), "{run}");
    let r = report(&run);
    assert_eq!(r["server"], format!("localhost:{}", services().pg.port));
    assert_eq!(r["user"], role.as_str());
    assert_eq!((r["ssl"].as_bool(), r["version"].as_str()), (Some(true), Some("TLSv1.3")));
    assert!(r["cipher"].as_str().is_some_and(|c| c.starts_with("TLS_")), "{run}");
    assert!(matches!(r["bits"].as_i64(), Some(128 | 256)), "{run}");
    assert_eq!(r["channel_binding"], true, "SCRAM-SHA-256-PLUS over TLS: {run}");
    let chain = r["certificates"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "leaf and trust anchor: {run}");
    assert_eq!(chain[0]["subject"], "CN=localhost");
    assert_eq!(chain[0]["sans"], serde_json::json!(["DNS:localhost", "IP:127.0.0.1"]));
    assert_eq!(chain[1]["subject"], "CN=launcher test CA");
    assert!(chain[0]["days_left"].as_i64().unwrap() > 300);
    // Every warning, the environment's overrides too (issue 13), and the verdict a monitor reads.
    assert_eq!(r["warnings"], serde_json::json!(["overriding inherited PGSSLMODE=require with verify-full"]));
    assert_eq!((r["verdict"].as_str(), r["exit_code"].as_i64()), (Some("ok"), Some(0)), "{run}");
    assert!(r["timings"]["fetch_ms"].is_f64() && r["timings"]["check_ms"].is_f64(), "{run}");
    let not_after = chain[0]["not_after"].as_str().unwrap();
    assert!(not_after.len() == 20 && not_after.ends_with('Z') && not_after.as_bytes()[10] == b'T', "RFC 3339: {run}");
}

/// psql (libpq) with verify-full against the test CA, as `role`, to `port`, running `sql`.
pub fn psql_as(port: u16, role: &str, password: &str, sql: &str) -> Command {
    psql_of(&support::pg::psql(), port, role, password, sql)
}

/// [`psql_as`] with the psql (and so the libpq) at `psql`.
pub fn psql_of(psql: &Path, port: u16, role: &str, password: &str, sql: &str) -> Command {
    let mut c = Command::new(psql);
    c.env_clear()
        .envs([("PGHOST", "localhost"), ("PGUSER", role), ("PGPASSWORD", password), ("PGDATABASE", "postgres")])
        .env("PGPORT", port.to_string())
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &services().certs.ca)
        .args(["-XAtc", sql]);
    c
}

/// The session as libpq's own connection to `port` sees it in `pg_stat_ssl`: version, cipher, bits.
pub fn libpq_session(port: u16, role: &str, password: &str) -> Vec<String> {
    let sql = "select version, cipher, bits from pg_stat_ssl where pid = pg_backend_pid()";
    let out = support::run_ok(&mut psql_as(port, role, password, sql));
    String::from_utf8_lossy(&out.stdout).trim().split('|').map(str::to_owned).collect()
}

/// A PostgreSQL limited to TLS 1.2 with the test certificate, `extra` added to its config.
pub fn tls12_server(name: &str, extra: &str) -> Pg {
    let s = services();
    let conf = format!("ssl_max_protocol_version = 'TLSv1.2'\n{extra}");
    Pg::start_custom(
        &s.root.join(unique(name)),
        &s.certs.server_cert,
        &s.certs.server_key,
        true,
        support::free_port_pair(),
        None,
        Some(support::pg::Custom {
            conf: &conf,
            hba: Some("local all all trust\nhostssl all all 127.0.0.0/8 scram-sha-256\n"),
            ..Default::default()
        }),
    )
}

#[test]
fn report_names_the_session_as_pg_stat_ssl_does_on_tls_1_3_and_1_2() {
    let s = services();
    let home = support::home(&unique("chk-home"));
    let tls12 = tls12_server("pg-tls12", "");
    for (port, pg, version) in [(s.pg.port, &s.pg, "TLSv1.3"), (tls12.port, &tls12, "TLSv1.2")] {
        let role = unique("tlsv");
        let password = canary();
        pg.create_role(&role, &password);
        let run = Run::of(launcher_as(&home, port, &role, &password).args(["check", "--output", "json"]));
        run.assert_ok().assert_no_leak(&password);
        let r = report(&run);
        let ours =
            [&r["version"], &r["cipher"], &r["bits"]].map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        assert_eq!(ours[0], version, "{run}");
        assert_eq!(ours.to_vec(), libpq_session(port, &role, &password), "the report against libpq's session: {run}");
        assert_eq!(r["channel_binding"], true, "tls-server-end-point as libpq computes it: {run}");
    }

    // Issue 14: the session is libpq's OpenSSL, so a TLS 1.2 server that offers only a CBC suite
    // (beyond rustls) is reached as libpq reaches it, and named as pg_stat_ssl names it.
    let cbc = tls12_server("pg-cbc", "ssl_ciphers = 'ECDHE-ECDSA-AES128-SHA256'\n");
    let role = unique("cbc");
    let password = canary();
    cbc.create_role(&role, &password);
    let run = Run::of(launcher_as(&home, cbc.port, &role, &password).args(["check", "--output", "json"]));
    run.assert_ok().assert_no_leak(&password);
    let r = report(&run);
    let ours =
        [&r["version"], &r["cipher"], &r["bits"]].map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    assert_eq!(ours[1], "ECDHE-ECDSA-AES128-SHA256", "{run}");
    assert_eq!(ours.to_vec(), libpq_session(cbc.port, &role, &password), "{run}");

    // PGSSLMINPROTOCOLVERSION / PGSSLMAXPROTOCOLVERSION bound the check as they bound libpq.
    let role = unique("tlsv");
    let password = canary();
    for pg in [&s.pg, &tls12] {
        pg.create_role(&role, &password);
    }
    let both = |port: u16, var: &str, value: &str| {
        let run =
            Run::of(launcher_as(&home, port, &role, &password).env(var, value).args(["check", "--output", "json"]));
        let libpq = psql_as(port, &role, &password, "select version from pg_stat_ssl where pid = pg_backend_pid()")
            .env(var, value)
            .output()
            .unwrap();
        (run, String::from_utf8_lossy(&libpq.stdout).trim().to_owned())
    };
    // TLS 1.0/1.1 are libpq's to try, and the system's OpenSSL to refuse, for both alike.
    let old = [("PGSSLMINPROTOCOLVERSION", "TLSv1"), ("PGSSLMAXPROTOCOLVERSION", "TLSv1.1")];
    let run = Run::of(launcher_as(&home, s.pg.port, &role, &password).envs(old).arg("check"));
    let libpq = psql_as(s.pg.port, &role, &password, "select 1").envs(old).output().unwrap();
    let libpq_error = String::from_utf8_lossy(&libpq.stderr);
    assert!(!libpq.status.success(), "{libpq_error}");
    let reason = libpq_error.lines().next().and_then(|l| l.rsplit_once("failed: ")).map(|(_, r)| r.trim()).unwrap();
    run.assert_fails(76, reason);
    let (run, libpq) = both(tls12.port, "PGSSLMINPROTOCOLVERSION", "TLSv1.3");
    assert_eq!((run.code, libpq.as_str()), (76, ""), "a TLS 1.2 server under a TLS 1.3 minimum: {run}");
    let (run, libpq) = both(s.pg.port, "PGSSLMAXPROTOCOLVERSION", "TLSv1.2");
    run.assert_ok();
    let r = report(&run);
    assert_eq!((r["version"].as_str(), libpq.as_str()), (Some("TLSv1.2"), "TLSv1.2"), "{run}");
    let (run, _) = both(s.pg.port, "PGSSLMINPROTOCOLVERSION", "TLSv9");
    run.assert_fails(78, "PGSSLMINPROTOCOLVERSION: invalid ssl_min_protocol_version value: \"TLSv9\"");
}

#[test]
fn through_a_pooler_without_channel_binding_the_check_connects_as_libpq_does() {
    let s = services();
    let home = support::home(&unique("chk-home"));
    let (mut cmd, role, password) = libpq_env(&home);
    let (_bouncer, port) =
        s.pg.pgbouncer(&s.root.join(unique("pgbouncer")), &s.certs.server_cert, &s.certs.server_key, &role, &password);
    // Through a relay, to count the check's connections: one, as libpq makes one.
    let tap = support::tap::Tap::start(port);
    let run = Run::of(
        cmd.env("PGPASSWORD", &password).env("PGPORT", tap.port.to_string()).args(["check", "--output", "json"]),
    );
    run.assert_ok().assert_no_leak(&password);
    let r = report(&run);
    assert_eq!(r["channel_binding"], false, "PgBouncer offers no SCRAM-SHA-256-PLUS: {run}");
    assert_eq!(tap.connections(), 1, "one connection to the pooler: {run}");
    // libpq, with its default channel_binding=prefer, connects through it as well.
    let mut psql_through = psql_as(port, &role, &password, "select 1");
    let out = psql_through.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", String::from_utf8_lossy(&out.stderr));

    // With PGCHANNELBINDING=require, libpq refuses the pooler, and so does the check.
    let out = psql_through.env("PGCHANNELBINDING", "require").output().unwrap();
    let libpq = String::from_utf8_lossy(&out.stderr);
    assert!(libpq.contains("channel binding is required, but server did not offer"), "{libpq}");
    let run = Run::of(launcher_as(&home, port, &role, &password).env("PGCHANNELBINDING", "require").arg("check"));
    run.assert_fails(
        77,
        "channel binding is required, but server did not offer an authentication method that supports channel binding",
    );
    // Straight to PostgreSQL, require is met; disable is honoured.
    for (mode, used) in [("require", true), ("disable", false)] {
        let run = Run::of(
            launcher_as(&home, s.pg.port, &role, &password)
                .env("PGCHANNELBINDING", mode)
                .args(["check", "--output", "json"]),
        );
        run.assert_ok();
        let r = report(&run);
        assert_eq!(r["channel_binding"], used, "PGCHANNELBINDING={mode}: {run}");
    }
    let (mut cmd, _, _) = libpq_env(&home);
    Run::of(cmd.env("PGPASSWORD", &password).env("PGCHANNELBINDING", "maybe").arg("check"))
        .assert_fails(78, "PGCHANNELBINDING: invalid channel_binding value: \"maybe\"");

    // A certificate signed with Ed25519 has no digest for channel binding: libpq fails against
    // PostgreSQL, which offers SCRAM-SHA-256-PLUS, but connects through the pooler, which does
    // not; so does the check.
    let dir = s.root.join(unique("ed-ca"));
    std::fs::create_dir_all(&dir).unwrap();
    let ed_ca = (dir.join("ed-ca.crt"), dir.join("ed-ca.key"));
    support::run_ok(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "30", "-subj", "/CN=ed25519 CA"])
            .arg("-keyout")
            .arg(&ed_ca.1)
            .arg("-out")
            .arg(&ed_ca.0),
    );
    let (cert, key) = support::certs::issue(&dir, "ed-signed", &ed_ca, "/CN=localhost", "subjectAltName=DNS:localhost");
    let (_ed_bouncer, ed_port) = s.pg.pgbouncer(&s.root.join(unique("pgbouncer")), &cert, &key, &role, &password);
    let out = psql_as(ed_port, &role, &password, "select 1").env("PGSSLROOTCERT", &ed_ca.0).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", String::from_utf8_lossy(&out.stderr));
    let run = Run::of(
        launcher_as(&home, ed_port, &role, &password)
            .env("PGSSLROOTCERT", &ed_ca.0)
            .args(["check", "--output", "json"]),
    );
    run.assert_ok();
    let r = report(&run);
    assert_eq!(r["channel_binding"], false, "{run}");
}

#[test]
fn target_session_attrs_are_judged_as_libpq_judges_them() {
    let s = services();
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    // A role whose sessions are read-only, as on a standby.
    s.pg.sql(&format!("ALTER ROLE {role} SET default_transaction_read_only = on"));
    let libpq = |attrs: &str| {
        let out = psql_as(s.pg.port, &role, &password, "select 1").env("PGTARGETSESSIONATTRS", attrs).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let ours = |attrs: &str| {
        Run::of(launcher_as(&home, s.pg.port, &role, &password).env("PGTARGETSESSIONATTRS", attrs).arg("check"))
    };
    let (ok, said) = libpq("read-write");
    assert!(!ok && said.contains("session is read-only"), "{said}");
    ours("read-write").assert_fails(69, "session is read-only");
    for attrs in ["read-only", "any", "prefer-standby"] {
        assert!(libpq(attrs).0, "libpq with {attrs}");
        ours(attrs).assert_ok();
    }
    // A primary whose sessions are read-only is still a primary (in_hot_standby is off).
    assert!(libpq("primary").0);
    ours("primary").assert_ok();
    let (ok, said) = libpq("standby");
    assert!(!ok && said.contains("server is not in hot standby mode"), "{said}");
    ours("standby").assert_fails(69, "server is not in hot standby mode");
    ours("sometimes").assert_fails(78, "PGTARGETSESSIONATTRS: invalid target_session_attrs value: \"sometimes\"");
}

#[test]
fn pgoptions_reach_the_server_from_the_check_as_from_libpq() {
    let home = support::home(&unique("chk-home"));
    // A bad one is FATAL at start-up, for libpq as for the check.
    let (mut cmd, _, password) = libpq_env(&home);
    Run::of(cmd.env("PGPASSWORD", &password).env("PGOPTIONS", "-c statement_timeout=soon").arg("check"))
        .assert_fails(78, "invalid value for parameter \"statement_timeout\": \"soon\" (SQLSTATE 22023)");
    let (mut cmd, _, password) = libpq_env(&home);
    Run::of(
        cmd.env("PGPASSWORD", &password)
            .env("PGOPTIONS", "-c no_such.setting_ok=1 -c statement_timeout=5s")
            .arg("check"),
    )
    .assert_ok();
    let (mut cmd, _, password) = libpq_env(&home);
    Run::of(cmd.env("PGPASSWORD", &password).env("PGOPTIONS", "-c no_such_setting=1").arg("check"))
        .assert_fails(78, "unrecognized configuration parameter \"no_such_setting\"");
}

#[test]
fn expiry_warning_names_each_certificate_close_to_expiry() {
    let home = support::home(&unique("chk-home"));
    let (mut cmd, _, password) = libpq_env(&home);
    let run = Run::of(cmd.env("PGPASSWORD", &password).args(["check", "--expiry-warning", "400"]));
    run.assert_ok();
    for subject in ["CN=localhost", "CN=launcher test CA"] {
        assert!(run.stderr.contains(&format!("warning: certificate \"{subject}\" expires in 36")), "{run}");
        assert!(run.stdout.contains(&format!("warning:     certificate \"{subject}\" expires in 36")), "{run}");
    }
}

#[test]
fn password_comes_from_pgpass_like_libpq() {
    let home = support::home(&unique("chk-home"));
    let (mut cmd, role, password) = libpq_env(&home);
    let pgpass = home.join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("localhost:*:postgres:{role}:{}\n", password.replace('\\', "\\\\").replace(':', "\\:")),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    Run::of(cmd.arg("check")).assert_ok().assert_no_leak(&password);

    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (mut cmd, _, _) = libpq_env(&home);
    let run = Run::of(cmd.env("PGUSER", &role).arg("check"));
    run.assert_fails(77, "has group or world access").assert_no_leak(&password);
}

#[test]
fn wait_retries_until_the_server_is_up_and_gives_up_with_75() {
    let s = services();
    let home = support::home(&unique("chk-home"));
    let (mut cmd, role, password) = libpq_env(&home);
    let port = support::free_port_pair();
    cmd.env("PGPASSWORD", &password).env("PGPORT", port.to_string()).args(["check", "--wait", "60s"]);
    let started = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let create = format!("CREATE ROLE {role} LOGIN PASSWORD '{}';", password.replace('\'', "''"));
    let dir = s.root.join(unique("pg-late"));
    let _late = Pg::start_on(&dir, &s.certs.server_cert, &s.certs.server_key, true, port, Some(&create));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("attempt 1 failed, retrying in "), "it should have waited: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let closed = support::free_port_pair();
    let (mut cmd, _, password) = libpq_env(&home);
    let run =
        Run::of(cmd.env("PGPASSWORD", &password).env("PGPORT", closed.to_string()).args(["check", "--wait", "1s"]));
    run.assert_fails(75, "still unavailable after waiting 1s");

    // Authentication failures are final: no waiting.
    let (mut cmd, _, _) = libpq_env(&home);
    let started = Instant::now();
    let run = Run::of(cmd.env("PGPASSWORD", "wrong").args(["check", "--wait", "30s"]));
    run.assert_fails(77, "password authentication failed");
    assert!(started.elapsed() < Duration::from_secs(10), "{run}");
}
