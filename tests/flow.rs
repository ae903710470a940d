//! The whole flow on OpenBao KV: fetch → PG* env → verified connection → exec, and each way it
//! must refuse.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use crate::support::{self, Fixture, Run, bao::ROOT_TOKEN, canary, launcher, pg::psql, services, unique};

const TLS_ROW: &str = "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()";

#[test]
fn psql_connects_over_verified_tls_with_only_the_env_it_gets() {
    let f = Fixture::new();
    let run = Run::of(f.launcher().arg("--").arg(psql()).args(["-XAtc", TLS_ROW]));
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "t|TLSv1.3", "{run}");
    let port = services().pg.port;
    assert!(run.stderr.contains(&format!("connected to localhost:{port} as {}, TLSv1.3 TLS_", f.role)), "{run}");
}

#[test]
fn verbose_says_where_the_time_goes_in_round_trips() {
    let f = Fixture::new();
    // A database 200 ms away: the check's phases are so many round trips of it.
    let tap = support::tap::Tap::slow(services().pg.port, std::time::Duration::from_millis(200));
    let run = Run::of(f.launcher().args(["-v", "--port", &tap.port.to_string(), "--", "true"]));
    run.assert_ok().assert_no_leak(&f.password);
    for phase in ["secrets fetched in ", "check: TCP connect and SSLRequest in ", "connection check took "] {
        assert!(run.stderr.contains(phase), "no {phase:?} in:\n{run}");
    }
    let number_before = |text: &str| -> f64 {
        let at = run.stderr.find(text).unwrap_or_else(|| panic!("no {text:?} in:\n{run}"));
        let before = run.stderr[..at].rsplit([' ', '(']).next().unwrap();
        before.parse().unwrap_or_else(|_| panic!("{before:?} before {text:?}:\n{run}"))
    };
    let rtt = number_before(" ms), server certificate");
    assert!((150.0..400.0).contains(&rtt), "the round trip is the tap's 200 ms: {run}");
    let hello = number_before(" RTT: the TLS hello");
    assert!((0.5..2.0).contains(&hello), "the certificate comes one round trip after the hello: {run}");
    let login = number_before(" RTT: TLS finish, SCRAM");
    assert!((2.5..4.5).contains(&login), "SCRAM's three exchanges: {run}");
}

#[test]
fn each_secret_is_read_once_however_many_references_name_it() {
    let f = Fixture::new();
    let bao = &services().bao;
    Run::of(f.launcher().args(["--", "true"])).assert_ok();
    // --credentials and --ca name one secret: one mount lookup, one read.
    assert_eq!(bao.audited_reads(&format!("sys/internal/ui/mounts/secret/{}", f.kv_path)), 1);
    assert_eq!(bao.audited_reads(&format!("secret/data/{}", f.kv_path)), 1);

    let ca_path = format!("tests/{}-ca", f.role);
    bao.put_kv2(&ca_path, &serde_json::json!({ "pem": std::fs::read_to_string(&services().certs.ca).unwrap() }));
    let mut cmd = launcher(&f.home);
    cmd.env("VAULT_ADDR", &bao.addr).env("VAULT_TOKEN", ROOT_TOKEN).args([
        "--credentials",
        &f.credentials(),
        "--ca",
        &format!("vault:secret/{ca_path}#pem"),
        "--",
        "true",
    ]);
    Run::of(&mut cmd).assert_ok();
    assert_eq!(bao.audited_reads(&format!("secret/data/{}", f.kv_path)), 2);
    assert_eq!(bao.audited_reads(&format!("secret/data/{ca_path}")), 1);
}

#[test]
fn the_kv_mount_lookup_and_the_read_go_out_together() {
    let f = Fixture::new();
    let bao = &services().bao;
    // A distant OpenBao: each answer takes a while, so a read sent only after the lookup's
    // answer could never be waiting beside it.
    let tap = support::tap::Tap::slow(bao.port, std::time::Duration::from_millis(400));
    let mut cmd = launcher(&f.home);
    cmd.env("VAULT_ADDR", format!("http://127.0.0.1:{}", tap.port)).env("VAULT_TOKEN", ROOT_TOKEN);
    let run = Run::of(cmd.args(["env", "--credentials", &f.credentials(), "--ca", &f.ca()]));
    run.assert_ok().assert_no_leak(&f.password);
    assert!(run.stdout.contains(&format!("export PGUSER='{}'", f.role)), "{run}");
    assert_eq!(tap.most_in_flight(), 2, "the lookup and the read were not in flight together");
    // The guess was right (`secret/` is KV v2): it was the one read.
    assert_eq!(bao.audited_reads(&format!("secret/data/{}", f.kv_path)), 1);
}

#[test]
fn exec_keeps_the_pid_passes_the_exit_code_and_strips_bootstrap_credentials() {
    let f = Fixture::new();
    let mut cmd = launcher(&f.home);
    cmd.env("VAULT_ADDR", &services().bao.addr)
        .env("BAO_TOKEN", ROOT_TOKEN)
        .env("LAUNCHER_CREDENTIALS", f.credentials())
        .env("LAUNCHER_CA", f.ca())
        .env("PGSSLMODE", "require")
        .env("PGGSSENCMODE", "prefer")
        .args(["--", "sh", "-c", "echo pid=$$; env; exit 42"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let launcher_pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(42), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("pid={launcher_pid}\n")), "the app must run as the launcher's PID:\n{stdout}");
    let env: Vec<(&str, &str)> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |n: &str| env.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    for gone in ["BAO_TOKEN", "VAULT_TOKEN", "LAUNCHER_CREDENTIALS", "LAUNCHER_CA"] {
        assert_eq!(get(gone), None, "{gone} must not reach the app");
    }
    assert_eq!(get("PGSSLMODE"), Some("verify-full"));
    assert_eq!(get("PGGSSENCMODE"), Some("disable"), "GSSAPI encryption would take precedence over the checked TLS");
    assert_eq!(get("PGUSER"), Some(f.role.as_str()));
    assert_eq!(get("PGHOST"), Some("localhost"));
    assert_eq!(get("PGDATABASE"), Some("postgres"));
    assert_eq!(get("PGPORT"), Some(services().pg.port.to_string().as_str()));
    assert_eq!(get("VAULT_ADDR"), Some(services().bao.addr.as_str()), "non-secret settings pass through");
    let root = PathBuf::from(get("PGSSLROOTCERT").expect("PGSSLROOTCERT"));
    assert_eq!(std::fs::read(&root).unwrap(), std::fs::read(&services().certs.ca).unwrap());
    let dir_mode = std::fs::metadata(root.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "runtime directory must be private");
    assert!(stderr.contains("overriding inherited PGSSLMODE=require with verify-full"), "{stderr}");
    assert!(stderr.contains("overriding inherited PGGSSENCMODE=prefer with disable"), "{stderr}");
    assert!(!stderr.contains(&f.password), "{stderr}");
}

#[test]
fn vault_namespace_reads_the_secret_in_that_namespace() {
    let s = services();
    let f = Fixture::new();
    let ns = unique("ns");
    s.bao.api("POST", &format!("/v1/sys/namespaces/{ns}"), None);
    let in_ns = |method: &str, path: &str, body: serde_json::Value| {
        let header = format!("X-Vault-Namespace: {ns}\r\n");
        let (status, text) =
            s.bao.request_with(method, path, Some(ROOT_TOKEN), Some(&body), &header).expect("OpenBao answers");
        assert!((200..300).contains(&status), "{method} {path} in {ns}: HTTP {status}: {text}");
    };
    in_ns("POST", "/v1/sys/mounts/secret", serde_json::json!({"type": "kv", "options": {"version": "2"}}));
    s.bao.wait_kv2_ready("secret", &format!("X-Vault-Namespace: {ns}\r\n"));
    // Only the namespace holds this path.
    let root_secret = s.bao.api("GET", &format!("/v1/secret/data/{}", f.kv_path), None);
    in_ns("POST", "/v1/secret/data/only-here/db", serde_json::json!({"data": root_secret["data"]["data"]}));
    let reference = ["--credentials", "vault:secret/only-here/db", "--ca", "vault:secret/only-here/db#ca_pem"];
    let base = || {
        let mut c = launcher(&f.home);
        c.env("VAULT_ADDR", &s.bao.addr).env("VAULT_TOKEN", ROOT_TOKEN).args(reference);
        c
    };
    for var in ["VAULT_NAMESPACE", "BAO_NAMESPACE"] {
        let run = Run::of(base().env(var, &ns).args(["--", "sh", "-c", "echo user=$PGUSER"]));
        run.assert_ok().assert_no_leak(&f.password);
        assert!(run.stdout.contains(&format!("user={}\n", f.role)), "{run}");
        assert!(run.stderr.contains(&format!("(namespace {ns}) with the token from VAULT_TOKEN")), "{run}");
    }
    Run::of(base().args(["--", "true"])).assert_fails(78, "vault:secret/only-here/db: no secret at this path");
    Run::of(base().env("VAULT_NAMESPACE", "no-such-ns").args(["--", "true"]))
        .assert_fails(78, "vault:secret/only-here/db (namespace no-such-ns): no secret at this path");
    // A refusal names the namespace once, beside the path.
    let run = Run::of(base().env("VAULT_NAMESPACE", &ns).env("VAULT_TOKEN", s.bao.weak_token()).args(["--", "true"]));
    run.assert_fails(77, &format!("vault:secret/only-here/db (namespace {ns}): permission denied"));
    assert_eq!(run.stderr.matches("(namespace").count(), 2, "the start-up line and the error, once each: {run}");
}

#[test]
fn kv_v1_flags_and_inherited_pg_variables_fill_the_gaps() {
    let s = services();
    let role = unique("kv1");
    let password = canary();
    s.pg.create_role(&role, &password);
    let mount = unique("kv1mount");
    s.bao.mount_kv1(&mount);
    s.bao.api("POST", &format!("/v1/{mount}/db"), Some(&serde_json::json!({"user": role, "password": password})));
    let ca_file = s.certs.ca.display().to_string();
    let run = Run::of(
        launcher(&support::home(&role))
            .env("VAULT_ADDR", &s.bao.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .env("PGHOST", "wrong.invalid")
            .env("PGPORT", s.pg.port.to_string())
            .env("PGDATABASE", "postgres")
            .args([
                "--credentials",
                &format!("vault:{mount}/db"),
                "--ca",
                &format!("file:{ca_file}"),
                "--host",
                "localhost",
            ])
            .arg("--")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/app.sh")),
    );
    run.assert_ok().assert_no_leak(&password);
    assert!(run.stdout.contains(&format!("connected as {role} to postgres on localhost:")), "{run}");
    assert!(run.stdout.contains("ssl=true version=TLSv1.3"), "{run}");
}

#[test]
fn check_reports_and_env_redacts() {
    let f = Fixture::new();
    let run = Run::of(f.launcher().arg("check"));
    // `check` takes its options after the subcommand.
    assert_eq!(run.code, 64, "{run}");
    let mut cmd = launcher(&f.home);
    cmd.env("VAULT_ADDR", &services().bao.addr).env("VAULT_TOKEN", ROOT_TOKEN);
    let run = Run::of(cmd.args(["check", "--credentials", &f.credentials(), "--ca", &f.ca()]));
    run.assert_ok().assert_no_leak(&f.password);
    assert!(run.stdout.contains("tls:         TLSv1.3"), "{run}");
    assert!(run.stdout.contains("names:     DNS:localhost, IP:127.0.0.1"), "{run}");
    assert!(run.stdout.contains("issuer:    CN=launcher test CA"), "{run}");
    assert!(run.stdout.contains("verdict:     ok"), "{run}");

    let mut cmd = launcher(&f.home);
    cmd.env("VAULT_ADDR", &services().bao.addr).env("VAULT_TOKEN", ROOT_TOKEN);
    let run = Run::of(cmd.args(["env", "--format", "json", "--credentials", &f.credentials(), "--ca", &f.ca()]));
    run.assert_ok().assert_no_leak(&f.password);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["PGPASSWORD"], "<redacted>");
    assert_eq!(json["PGSSLMODE"], "verify-full");
    assert_eq!(json["PGUSER"], f.role.as_str());

    let mut cmd = launcher(&f.home);
    cmd.env("VAULT_ADDR", &services().bao.addr).env("VAULT_TOKEN", ROOT_TOKEN);
    let run = Run::of(cmd.args(["env", "--reveal", "--credentials", &f.credentials(), "--ca", &f.ca()]));
    run.assert_ok();
    let quoted = f.password.replace('\'', r"'\''");
    assert!(run.stdout.contains(&format!("export PGPASSWORD='{quoted}'\n")), "{run}");
}

#[test]
fn refuses_a_server_signed_by_another_ca() {
    let f = Fixture::new();
    let other = format!("file:{}", services().certs.other_ca.display());
    let run = Run::of(f.launcher().args(["--ca", &other, "--", "true"]));
    run.assert_fails(76, "SSL error: certificate verify failed").assert_no_leak(&f.password);
}

#[test]
fn refuses_a_host_name_the_certificate_does_not_carry() {
    let f = Fixture::new();
    let run = Run::of(f.launcher().args(["--host", "127.0.0.2", "--", "true"]));
    run.assert_fails(
        76,
        r#"server certificate for "localhost" (and 1 other name) does not match host name "127.0.0.2""#,
    )
    .assert_no_leak(&f.password);
}

#[test]
fn refuses_a_server_without_tls_and_the_server_refuses_plaintext() {
    let s = services();
    let f = Fixture::new();
    // The TLS cluster has no plain `host` line: libpq without TLS is turned away.
    let out = Command::new(psql())
        .env_clear()
        .env("PGPASSWORD", &f.password)
        .args([
            "-XAtc",
            "select 1",
            &format!("host=127.0.0.1 port={} user={} dbname=postgres sslmode=disable", s.pg.port, f.role),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no encryption"), "{}", String::from_utf8_lossy(&out.stderr));

    let plain = support::Pg::start(&s.root.join("pg-plain"), &s.certs, false);
    let run = Run::of(f.launcher().args(["--port", &plain.port.to_string(), "--", "true"]));
    run.assert_fails(76, "server does not support SSL, but SSL was required").assert_no_leak(&f.password);
}

#[test]
fn wrong_password_is_an_authentication_failure() {
    let f = Fixture::new();
    let wrong = canary();
    services().bao.put_kv2(
        &f.kv_path,
        &serde_json::json!({
            "username": f.role, "password": wrong, "host": "localhost",
            "port": services().pg.port, "dbname": "postgres",
            "ca_pem": std::fs::read_to_string(&services().certs.ca).unwrap(),
        }),
    );
    let run = Run::of(f.launcher().args(["--", "true"]));
    run.assert_fails(77, &format!("password authentication failed for user \"{}\"", f.role))
        .assert_no_leak(&wrong)
        .assert_no_leak(&f.password);
}

#[test]
fn vault_failures_map_to_their_exit_codes() {
    let f = Fixture::new();
    // Nothing listens on the port just below a free pair.
    let closed = format!("http://127.0.0.1:{}", support::free_port_pair());
    Run::of(f.launcher().env("VAULT_ADDR", &closed).args(["--", "true"]))
        .assert_fails(69, &format!("cannot reach Vault at {closed}"))
        .assert_no_leak(&f.password);

    let weak = services().bao.weak_token();
    Run::of(f.launcher().env("VAULT_TOKEN", &weak).args(["--", "true"]))
        // Credentials and CA are fetched concurrently: either may be the one reported.
        .assert_fails(77, &format!("vault:secret/{}", f.kv_path))
        .assert_fails(77, ": permission denied by Vault at http://127.0.0.1:")
        .assert_no_leak(&f.password)
        .assert_no_leak(&weak);

    Run::of(f.launcher().args(["--ca", &format!("vault:secret/{}#nope", f.kv_path), "--", "true"]))
        .assert_fails(65, &format!("vault:secret/{}#nope: field \"nope\" is missing (fields present: ca_pem, dbname, host, password, port, username)", f.kv_path))
        .assert_no_leak(&f.password);

    Run::of(f.launcher().args(["--credentials", "vault:secret/tests/does-not-exist", "--", "true"]))
        .assert_fails(78, "vault:secret/tests/does-not-exist: no secret at this path")
        .assert_no_leak(&f.password);

    Run::of(f.launcher().env("VAULT_ADDR", "http://192.0.2.10:8200").args(["--", "true"]))
        .assert_fails(78, "refusing plain http:// to 192.0.2.10");

    Run::of(f.launcher().env_remove("VAULT_TOKEN").args(["--", "true"])).assert_fails(78, "Vault token: none found");
}

#[test]
fn exec_failures_use_the_shell_codes() {
    let f = Fixture::new();
    Run::of(f.launcher().args(["--", "/nonexistent/app"]))
        .assert_fails(127, "/nonexistent/app: command not found")
        .assert_no_leak(&f.password);
    let not_exec = f.home.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    Run::of(f.launcher().arg("--").arg(&not_exec)).assert_fails(126, "permission denied").assert_no_leak(&f.password);
    Run::of(f.launcher().arg("--bogus-flag")).assert_fails(64, "--bogus-flag");
}

#[test]
fn vault_over_tls_is_verified_against_vault_cacert() {
    let s = services();
    let f = Fixture::new();
    let dir = s.root.join(unique("bao-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = support::free_port_pair();
    let log = std::fs::File::create(dir.join("bao.log")).unwrap();
    let _bao = support::KillOnDrop(
        support::with_pdeathsig("KILL", support::bao::bao_binary())
            .args(["server", "-dev", "-dev-tls", "-dev-root-token-id=root"])
            .arg(format!("-dev-tls-cert-dir={}", dir.display()))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", &dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let addr = format!("https://127.0.0.1:{port}");
    let vault_ca = dir.join("vault-ca.pem");
    let bao = |args: &[&str]| {
        let mut c = Command::new(support::bao::bao_binary());
        c.env_clear()
            .env("HOME", &dir)
            .env("VAULT_ADDR", &addr)
            .env("VAULT_CACERT", &vault_ca)
            .env("VAULT_TOKEN", "root");
        c.args(args);
        c
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !bao(&["status"]).output().is_ok_and(|o| o.status.success()) {
        assert!(std::time::Instant::now() < deadline, "TLS OpenBao did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let port_field = format!("port={}", s.pg.port);
    let user_field = format!("username={}", f.role);
    let mut put = bao(&[
        "kv",
        "put",
        "-mount=secret",
        "tls-db",
        &user_field,
        "host=localhost",
        &port_field,
        "dbname=postgres",
        "password=-",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .spawn()
    .unwrap();
    std::io::Write::write_all(&mut put.stdin.take().unwrap(), f.password.as_bytes()).unwrap();
    assert!(put.wait().unwrap().success());

    let ca = format!("file:{}", s.certs.ca.display());
    let launch = |cacert: Option<&std::path::Path>, extra: &[&str]| {
        let mut c = launcher(&f.home);
        c.env("VAULT_ADDR", &addr).env("VAULT_TOKEN", "root").args([
            "--credentials",
            "vault:secret/tls-db",
            "--ca",
            &ca,
        ]);
        if let Some(p) = cacert {
            c.env("VAULT_CACERT", p);
        }
        c.args(extra).args(["--", "true"]);
        Run::of(&mut c)
    };
    launch(Some(&vault_ca), &[]).assert_ok().assert_no_leak(&f.password);
    // Issue 13: a refused certificate is a TLS refusal (76), never retried, naming whose it was.
    let started = std::time::Instant::now();
    let run = launch(Some(&s.certs.other_ca), &["--wait", "20s"]);
    run.assert_fails(76, &format!("Vault at {addr} presented a certificate that is not trusted"))
        .assert_fails(76, "is issued by ")
        .assert_fails(76, "give its CA with --vault-cacert")
        .assert_no_leak(&f.password);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "not retried under --wait: {run}");
    assert!(!run.stderr.contains("retrying"), "{run}");
    launch(None, &[]).assert_fails(76, "not trusted").assert_no_leak(&f.password);
    // The launcher never skips that verification, and says so when asked to.
    let mut c = launcher(&f.home);
    c.env("VAULT_ADDR", &addr).env("VAULT_TOKEN", "root").env("VAULT_SKIP_VERIFY", "1").env("BAO_SKIP_VERIFY", "true");
    Run::of(c.args(["--credentials", "vault:secret/tls-db", "--ca", &ca, "--", "true"]))
        .assert_fails(76, "VAULT_SKIP_VERIFY is ignored: the launcher always verifies Vault's certificate")
        .assert_fails(76, "BAO_SKIP_VERIFY is ignored");
}

#[test]
fn an_inherited_pgservice_cannot_undo_what_the_launcher_sets() {
    let f = Fixture::new();
    // A service file that would send libpq elsewhere: service settings take precedence over
    // PG* variables in libpq (sslmode and sslrootcert included), all or nothing, so the host
    // alone shows whether the service was applied.
    let services_file = f.home.join("pg_service.conf");
    std::fs::write(&services_file, "[legacy]\nhost=wrong.invalid\nport=1\n").unwrap();
    let run = Run::of(
        f.launcher()
            .env("PGSERVICEFILE", &services_file)
            .env("PGSERVICE", "legacy")
            .arg("--")
            .arg(psql())
            .args(["-XAtc", TLS_ROW]),
    );
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "t|TLSv1.3", "{run}");
    assert!(run.stderr.contains("withholding inherited PGSERVICE"), "{run}");
}
