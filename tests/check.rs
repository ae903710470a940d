//! `launcher check` as a user points it at an existing set-up: libpq's own environment only,
//! the report (human and JSON), expiry warnings, channel binding, `.pgpass`, and `--wait`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Pg, Run, canary, launcher, services, unique};

/// A role, and the libpq environment that reaches the shared server as it (no password set).
fn libpq_env(home: &Path) -> (Command, String, String) {
    let s = services();
    let role = unique("chk");
    let password = canary();
    s.pg.create_role(&role, &password);
    (launcher_for(home, s.pg.port, &role), role, password)
}

/// The launcher with libpq's environment for an existing `role` at `port`, without a password.
fn launcher_for(home: &Path, port: u16, role: &str) -> Command {
    let mut cmd = launcher(home);
    cmd.env("PGHOST", "localhost")
        .env("PGPORT", port.to_string())
        .env("PGUSER", role)
        .env("PGDATABASE", "postgres")
        .env("PGSSLROOTCERT", &services().certs.ca);
    cmd
}

/// [`launcher_for`], with `password` in PGPASSWORD.
fn launcher_as(home: &Path, port: u16, role: &str, password: &str) -> Command {
    let mut cmd = launcher_for(home, port, role);
    cmd.env("PGPASSWORD", password);
    cmd
}

/// The JSON report of a `check --output json` run.
fn report(run: &Run) -> serde_json::Value {
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
fn psql_as(port: u16, role: &str, password: &str, sql: &str) -> Command {
    psql_of(&support::pg::psql(), port, role, password, sql)
}

/// [`psql_as`] with the psql (and so the libpq) at `psql`.
fn psql_of(psql: &Path, port: u16, role: &str, password: &str, sql: &str) -> Command {
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
fn libpq_session(port: u16, role: &str, password: &str) -> Vec<String> {
    let sql = "select version, cipher, bits from pg_stat_ssl where pid = pg_backend_pid()";
    let out = support::run_ok(&mut psql_as(port, role, password, sql));
    String::from_utf8_lossy(&out.stdout).trim().split('|').map(str::to_owned).collect()
}

/// A PostgreSQL limited to TLS 1.2 with the test certificate, `extra` added to its config.
fn tls12_server(name: &str, extra: &str) -> Pg {
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
    let run = ours("primary");
    run.assert_ok();
    assert!(run.stderr.contains("PGTARGETSESSIONATTRS primary/standby is not checked"), "{run}");
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

#[test]
fn direct_tls_is_negotiated_as_libpq_17_negotiates_it() {
    let s = services();
    let v17 = support::pg::newer(17);
    let custom = support::pg::Custom { bindir: Some(&v17), ..Default::default() };
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let pg17 =
        Pg::start_custom(&s.root.join(unique("pg17")), cert, key, true, support::free_port_pair(), None, Some(custom));
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    pg17.create_role(&role, &password);
    let psql17 = |port: u16| {
        let sql = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
        psql_of(&v17.join("psql"), port, &role, &password, sql).env("PGSSLNEGOTIATION", "direct").output().unwrap()
    };
    // PostgreSQL 17 takes TLS at once; the check's first bytes are a ClientHello naming ALPN
    // "postgresql", not the SSLRequest.
    let out = psql17(pg17.port);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t", "{}", String::from_utf8_lossy(&out.stderr));
    let tap = support::tap::Tap::start(pg17.port);
    let mark = tap.connections();
    let run = Run::of(launcher_as(&home, tap.port, &role, &password).env("PGSSLNEGOTIATION", "direct").arg("check"));
    run.assert_ok().assert_no_leak(&password);
    assert_eq!(tap.sent_since(mark, &[0, 0, 0, 8, 4, 210, 22, 47]), [false], "no SSLRequest: {run}");
    assert_eq!(tap.sent_since(mark, b"\x0apostgresql"), [true], "ALPN: {run}");
    // PostgreSQL 15 does not: libpq 17 fails, and the check says what it says.
    let out = psql17(s.pg.port);
    let libpq = String::from_utf8_lossy(&out.stderr);
    assert!(libpq.contains("failed: SSL SYSCALL error: EOF detected"), "{libpq}");
    let run = Run::of(launcher_as(&home, s.pg.port, &role, &password).env("PGSSLNEGOTIATION", "direct").arg("check"));
    run.assert_fails(76, "failed: SSL SYSCALL error: EOF detected");
    let run = Run::of(launcher_as(&home, s.pg.port, &role, &password).env("PGSSLNEGOTIATION", "fast").arg("check"));
    run.assert_fails(78, "PGSSLNEGOTIATION: invalid sslnegotiation value: \"fast\"");
}

#[test]
fn require_auth_refuses_what_libpq_17_refuses_before_a_password_goes_out() {
    let s = services();
    let v17 = support::pg::newer(17);
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    // A server that asks for the password in clear (over TLS), and logs who logs in.
    let hba = "local all all trust\nhostssl all all 127.0.0.0/8 password\n";
    let custom = support::pg::Custom { hba: Some(hba), conf: "log_connections = on\n", ..Default::default() };
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let port = support::free_port_pair();
    let cleartext = Pg::start_custom(&s.root.join(unique("pg-pw")), cert, key, true, port, None, Some(custom));
    cleartext.create_role(&role, &password);
    let (scram, clear) = (s.pg.port, cleartext.port);
    let cases = [
        (scram, "scram-sha-256"),
        (scram, "password"),
        (scram, "!scram-sha-256"),
        (scram, "none"),
        (scram, ""),
        (clear, "scram-sha-256"),
        (clear, "md5,password"),
        (clear, "!md5"),
    ];
    for (port, value) in cases {
        let libpq = psql_of(&v17.join("psql"), port, &role, &password, "select 1").env("PGREQUIREAUTH", value).output();
        let libpq = libpq.unwrap();
        let run = Run::of(launcher_as(&home, port, &role, &password).env("PGREQUIREAUTH", value).arg("check"));
        run.assert_no_leak(&password);
        if libpq.status.success() {
            run.assert_ok();
        } else {
            let said = String::from_utf8_lossy(&libpq.stderr);
            let words = said.trim().split_once("failed: ").map_or(said.trim(), |(_, w)| w);
            assert!(words.starts_with("authentication method requirement"), "PGREQUIREAUTH={value:?}: {said}");
            run.assert_fails(77, words);
        }
    }
    // Refused before the password went out: the cleartext server logs no login of the check's
    // (and one once the requirement allows it).
    let logins = || {
        let log = std::fs::read_to_string(&cleartext.log).unwrap();
        log.matches(&format!("connection authorized: user={role} database=postgres application_name=launcher")).count()
    };
    let before = logins();
    Run::of(launcher_as(&home, clear, &role, &password).env("PGREQUIREAUTH", "scram-sha-256").arg("check"))
        .assert_fails(77, "server requested a cleartext password");
    assert_eq!(logins(), before, "the check logged in although PGREQUIREAUTH forbids it");
    Run::of(launcher_as(&home, clear, &role, &password).env("PGREQUIREAUTH", "password").arg("check")).assert_ok();
    assert_eq!(logins(), before + 1);
    // Values libpq refuses before it connects, in its words, before anything is fetched.
    for value in ["bogus", "!password,md5", "password,!md5", "scram-sha-256,scram-sha-256"] {
        let libpq =
            psql_of(&v17.join("psql"), scram, &role, &password, "select 1").env("PGREQUIREAUTH", value).output();
        let said = String::from_utf8_lossy(&libpq.unwrap().stderr).trim().replace("psql: error: ", "");
        let run = Run::of(launcher_as(&home, scram, &role, &password).env("PGREQUIREAUTH", value).arg("check"));
        run.assert_fails(78, &format!("PGREQUIREAUTH: {said}"));
    }
}

/// A relay in front of the shared PostgreSQL, and a role (home, name, password) to connect as.
fn a_role_through_a_tap() -> (support::tap::Tap, std::path::PathBuf, String, String) {
    let tap = support::tap::Tap::start(services().pg.port);
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    (tap, home, role, password)
}

#[test]
fn the_check_offers_the_key_share_postgresql_takes_and_saves_the_retry() {
    // PostgreSQL 15's one group is P-256 (ssl_ecdh_curve): OpenSSL's default X25519 key share,
    // libpq's, is answered with a HelloRetryRequest; the check offers P-256 first.
    let (tap, home, role, password) = a_role_through_a_tap();
    let mark = tap.connections();
    support::run_ok(&mut psql_as(tap.port, &role, &password, "select 1"));
    assert_eq!(tap.client_hellos_since(mark), [2], "libpq is asked to retry");
    let mark = tap.connections();
    Run::of(launcher_as(&home, tap.port, &role, &password).arg("check")).assert_ok();
    assert_eq!(tap.client_hellos_since(mark), [1], "the check's first key share is taken");
    // A policy in openssl.cnf that names the groups is followed as libpq follows it.
    let conf = home.join("groups.cnf");
    std::fs::write(&conf, "openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = d\n[d]\nGroups = X25519:P-256\n")
        .unwrap();
    let mark = tap.connections();
    Run::of(launcher_as(&home, tap.port, &role, &password).env("OPENSSL_CONF", &conf).arg("check")).assert_ok();
    assert_eq!(tap.client_hellos_since(mark), [2], "the configured order is kept");
}

#[test]
fn sni_goes_out_as_libpq_sends_it() {
    // libpq sends the host name as SNI unless PGSSLSNI is set to something not starting with
    // "1" (so "true" and "" turn it off too): proxies that route by SNI see the same from both.
    let (tap, home, role, password) = a_role_through_a_tap();
    for value in [None, Some("1"), Some("0"), Some("true"), Some("")] {
        let mark = tap.connections();
        let mut cmd = launcher_as(&home, tap.port, &role, &password);
        cmd.arg("check");
        let mut libpq = psql_as(tap.port, &role, &password, "select 1");
        if let Some(v) = value {
            cmd.env("PGSSLSNI", v);
            libpq.env("PGSSLSNI", v);
        }
        let run = Run::of(&mut cmd);
        run.assert_ok();
        let ours = tap.sent_since(mark, b"localhost");
        let mark = tap.connections();
        support::run_ok(&mut libpq);
        let theirs = tap.sent_since(mark, b"localhost");
        assert_eq!(theirs.len(), 1, "psql connects once");
        assert!(
            !ours.is_empty() && ours.iter().all(|sent| *sent == theirs[0]),
            "PGSSLSNI={value:?}: {ours:?} vs libpq {theirs:?}: {run}"
        );
        assert_eq!(theirs[0], value.is_none_or(|v| v.starts_with('1')), "libpq's own rule, PGSSLSNI={value:?}");
    }
}

#[test]
fn empty_or_junk_libpq_variables_fail_the_check_as_they_fail_libpq() {
    // libpq takes an empty PGCHANNELBINDING or PGTARGETSESSIONATTRS as a value, and refuses it
    // (a compose file's `PGCHANNELBINDING: ${CB:-}` does this), and a connect_timeout that is no
    // integer; the check must not call such an app's connection fine. An empty
    // PGSSLMINPROTOCOLVERSION is libpq's default, for both.
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    let cases = [
        ("PGCHANNELBINDING", "", Some("invalid channel_binding value: \"\"")),
        ("PGTARGETSESSIONATTRS", "", Some("invalid target_session_attrs value: \"\"")),
        ("PGCONNECT_TIMEOUT", "", Some("invalid integer value \"\" for connection option \"connect_timeout\"")),
        ("PGCONNECT_TIMEOUT", "3x", Some("invalid integer value \"3x\" for connection option \"connect_timeout\"")),
        ("PGCONNECT_TIMEOUT", "-1", None),
        ("PGSSLMINPROTOCOLVERSION", "", None),
    ];
    // An empty PGHOST is libpq's Unix socket, which has no TLS: no host for the check.
    let (mut cmd, _, _) = libpq_env(&home);
    Run::of(cmd.env("PGHOST", "").arg("check")).assert_fails(78, "no database host: pass --host, or set PGHOST");
    // Host and port lists, which libpq walks and the check does not (yet): refused, not judged
    // for the first entry only.
    let (mut cmd, _, _) = libpq_env(&home);
    Run::of(cmd.env("PGHOST", "localhost,127.0.0.1").arg("check"))
        .assert_fails(78, "lists several hosts; give exactly one");
    let (mut cmd, _, _) = libpq_env(&home);
    let port = services().pg.port;
    Run::of(cmd.env("PGPORT", format!("{port},{port}")).arg("check")).assert_fails(78, "is not a port number");
    for (var, value, error) in cases {
        let libpq = psql_as(services().pg.port, &role, &password, "select 1").env(var, value).output().unwrap();
        let libpq_said = String::from_utf8_lossy(&libpq.stderr).into_owned();
        let run = Run::of(launcher_as(&home, services().pg.port, &role, &password).env(var, value).arg("check"));
        if let Some(words) = error {
            assert!(libpq_said.contains(words), "libpq with {var}={value:?}: {libpq_said}");
            run.assert_fails(78, &format!("{var}: {words}"));
        } else {
            assert!(libpq.status.success(), "libpq with {var}={value:?}: {libpq_said}");
            run.assert_ok();
        }
    }
}

/// The `PG…` variables a libpq reads: the names in its library, as `strings` finds them.
fn variables_read_by(libpq: &Path) -> Vec<String> {
    let bytes = std::fs::read(libpq).unwrap();
    let mut names: Vec<String> = bytes
        .split(|b| *b == 0)
        .filter(|s| s.len() > 2 && s.starts_with(b"PG") && s.iter().all(|b| b.is_ascii_uppercase() || *b == b'_'))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .filter(|s| !s.starts_with("PGRES_"))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_variable_libpq_15_or_18_reads_is_accounted_for() {
    // docs/security.md says, for each, whether the launcher overrides, judges, warns about or
    // passes it, and why: none may be missing from it, in either version.
    let table = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/security.md")).unwrap();
    let v15 = support::run_ok(Command::new("pg_config").arg("--libdir"));
    let v15 = Path::new(String::from_utf8_lossy(&v15.stdout).trim()).join("libpq.so.5");
    let v18 = support::pg::newer(18).join("../lib/libpq.so.5");
    for libpq in [v15, v18] {
        let names = variables_read_by(&libpq);
        assert!(names.len() > 30 && names.contains(&"PGSSLMODE".to_owned()), "{}: {names:?}", libpq.display());
        let missing: Vec<&String> = names.iter().filter(|n| !table.contains(&format!("`{n}`"))).collect();
        assert!(missing.is_empty(), "docs/security.md does not account for {missing:?} ({})", libpq.display());
    }
}

#[test]
fn settings_only_newer_libpq_reads_are_named_in_warnings() {
    // libpq 16 reads PGSSLCERTMODE; the check does not judge it yet: it connects as before and
    // says what it left to the app's libpq. (PGREQUIREAUTH and PGSSLNEGOTIATION are honoured:
    // require_auth_… and direct_tls_… above.)
    let home = support::home(&unique("chk-home"));
    let (mut cmd, _, password) = libpq_env(&home);
    let run = Run::of(
        cmd.env("PGPASSWORD", &password)
            .env("PGREQUIREAUTH", "scram-sha-256")
            .env("PGSSLCERTMODE", "allow")
            .env("PGSSLNEGOTIATION", "postgres")
            .env("PGMINPROTOCOLVERSION", "3.0")
            .env("PGMAXPROTOCOLVERSION", "3.2")
            .env("PGOAUTHDEBUG", "UNSAFE")
            .args(["check", "--output", "json"]),
    );
    run.assert_ok();
    let r = report(&run);
    let warnings: Vec<&str> = r["warnings"].as_array().unwrap().iter().filter_map(|w| w.as_str()).collect();
    let newer =
        [("PGSSLCERTMODE", 16), ("PGMINPROTOCOLVERSION", 18), ("PGMAXPROTOCOLVERSION", 18), ("PGOAUTHDEBUG", 18)];
    for (var, version) in newer {
        let expected = format!("{var} is not judged by the check (libpq {version} and later read it)");
        assert!(warnings.iter().any(|w| w.starts_with(&expected)), "{var}: {warnings:?}");
    }
    assert!(!warnings.iter().any(|w| w.contains("PGSSLNEGOTIATION") || w.contains("PGREQUIREAUTH")), "{warnings:?}");
}

#[test]
fn passwords_that_saslprep_changes_authenticate_as_with_libpq() {
    // SCRAM runs the password through SASLprep (RFC 4013) on both ends: PostgreSQL when it
    // stores the secret, libpq and the check when they log in; where SASLprep refuses a password
    // (an unassigned code point, a prohibited character) each side uses the raw bytes. The
    // check must land where libpq lands for each kind.
    let home = support::home(&unique("chk-home"));
    let passwords = [
        "soft\u{ad}hyphen",   // mapped to nothing
        "no\u{a0}break",      // mapped to a plain space
        "ｆｕｌｌｗｉｄｔｈ", // NFKC: ASCII letters
        "roman\u{2163}",      // NFKC: "IV"
        "emoji\u{1f511}",     // unassigned in Unicode 3.2: raw bytes
        "bell\u{7}",          // a control character, prohibited: raw bytes
    ];
    for password in passwords {
        let role = unique("prep");
        services().pg.create_role(&role, password);
        let libpq = psql_as(services().pg.port, &role, password, "select 1").output().unwrap();
        assert!(libpq.status.success(), "libpq with {password:?}: {}", String::from_utf8_lossy(&libpq.stderr));
        Run::of(launcher_as(&home, services().pg.port, &role, password).arg("check")).assert_ok();
        // The same characters, but not the same password: refused by both.
        let wrong = format!("{password}x");
        let libpq = psql_as(services().pg.port, &role, &wrong, "select 1").output().unwrap();
        assert!(!libpq.status.success());
        Run::of(launcher_as(&home, services().pg.port, &role, &wrong).arg("check"))
            .assert_fails(77, "password authentication failed");
    }
}

#[test]
fn a_server_that_only_speaks_p521_ecdhe_is_reached_as_libpq_reaches_it() {
    // PostgreSQL takes one ssl_ecdh_curve for TLS 1.2 and 1.3; with secp521r1 (hardening guides
    // suggest it) libpq's OpenSSL connects, and the check must too: P-521 is offered, and the
    // server asks for it.
    let s = services();
    let home = support::home(&unique("chk-home"));
    let dir = s.root.join(unique("pg-p521"));
    let custom = support::pg::Custom { conf: "ssl_ecdh_curve = 'secp521r1'\n", ..Default::default() };
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let pg = Pg::start_custom(&dir, cert, key, true, support::free_port_pair(), None, Some(custom));
    let role = unique("p521");
    let password = canary();
    pg.create_role(&role, &password);
    for version in ["TLSv1.3", "TLSv1.2"] {
        let libpq = psql_as(pg.port, &role, &password, "select version from pg_stat_ssl where pid = pg_backend_pid()")
            .env("PGSSLMAXPROTOCOLVERSION", version)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&libpq.stdout).trim(),
            version,
            "libpq: {}",
            String::from_utf8_lossy(&libpq.stderr)
        );
        let run = Run::of(
            launcher_as(&home, pg.port, &role, &password)
                .env("PGSSLMAXPROTOCOLVERSION", version)
                .args(["check", "--output", "json"]),
        );
        run.assert_ok();
        let r = report(&run);
        assert_eq!(r["version"], version, "{run}");
    }
}

#[test]
fn sslrootcert_system_trusts_the_system_roots_as_libpq_16_does() {
    // libpq 16 and later read PGSSLROOTCERT=system as "the system's trusted roots"
    // (SSL_CTX_set_default_verify_paths, which SSL_CERT_FILE redirects; the psql here is 15, so
    // this is the launcher alone). The test CA as the system store: accepted; an empty store:
    // refused as libpq would refuse it.
    let home = support::home(&unique("chk-home"));
    let empty = home.join("no-roots");
    std::fs::create_dir_all(&empty).unwrap();
    let (mut cmd, _, password) = libpq_env(&home);
    let run = Run::of(
        cmd.env("PGPASSWORD", &password)
            .env("PGSSLROOTCERT", "system")
            .env("SSL_CERT_FILE", &services().certs.ca)
            .env("SSL_CERT_DIR", &empty)
            .args(["check", "--output", "json"]),
    );
    run.assert_ok();
    assert!(run.stderr.contains("PGSSLROOTCERT=system: the check trusts the system's roots"), "{run}");
    let r = report(&run);
    assert_eq!(r["certificates"][1]["subject"], "CN=launcher test CA", "{run}");
    let (mut cmd, _, password) = libpq_env(&home);
    Run::of(
        cmd.env("PGPASSWORD", &password)
            .env("PGSSLROOTCERT", "system")
            .env("SSL_CERT_FILE", empty.join("none.pem"))
            .env("SSL_CERT_DIR", &empty)
            .arg("check"),
    )
    .assert_fails(76, "certificate verify failed: unable to get local issuer certificate");
}

#[test]
fn settings_libpq_sends_at_start_up_reach_the_server_from_the_check_too() {
    // libpq sends PGDATESTYLE, PGTZ, PGGEQO and PGCLIENTENCODING in its start-up packet; a value
    // the server rejects is FATAL there, so the app would not start: the check must fail alike.
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    let cases = [
        ("PGTZ", "Mars/Base"),
        ("PGTZ", "Europe/Paris"),
        ("PGTZ", ""),
        ("PGTZ", "default"),
        ("PGDATESTYLE", "nonsense"),
        ("PGDATESTYLE", "ISO, DMY"),
        ("PGGEQO", "maybe"),
        ("PGGEQO", "off"),
        ("PGCLIENTENCODING", "bogus"),
        ("PGCLIENTENCODING", "LATIN1"),
        ("PGCLIENTENCODING", "auto"),
    ];
    let mut refused = 0;
    for (var, value) in cases {
        let libpq = psql_as(services().pg.port, &role, &password, "select 1").env(var, value).output().unwrap();
        let said = String::from_utf8_lossy(&libpq.stderr).into_owned();
        let run = Run::of(launcher_as(&home, services().pg.port, &role, &password).env(var, value).arg("check"));
        if libpq.status.success() {
            run.assert_ok();
        } else {
            refused += 1;
            let words =
                said.split("FATAL:  ").nth(1).and_then(|w| w.lines().next()).unwrap_or_else(|| panic!("{said}"));
            run.assert_fails(78, words);
        }
    }
    assert_eq!(refused, 5, "the bad values are refused by libpq");
}
