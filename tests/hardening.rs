//! Issue 13: the holes an adversarial run found, each against the real services. Every test
//! here failed on the launcher before the fix it names.

mod signals;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{self, Fixture, Run, bao::ROOT_TOKEN, launcher, pg::psql, services, unique};

const TLS_ROW: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";

/// A KV secret at a fresh path holding `data`; returns its reference.
fn kv(data: &serde_json::Value) -> String {
    let path = format!("tests/{}", unique("hard"));
    services().bao.put_kv2(&path, data);
    format!("vault:secret/{path}")
}

/// `launcher [sub] --credentials REF --ca <the test CA>` with Vault's address and root token.
pub fn launch_with(home: &Path, sub: &[&str], credentials: &str) -> Command {
    let s = services();
    let mut c = launcher(home);
    c.env("VAULT_ADDR", &s.bao.addr).env("VAULT_TOKEN", ROOT_TOKEN).args(sub).args([
        "--credentials",
        credentials,
        "--ca",
        &format!("file:{}", s.certs.ca.display()),
    ]);
    c
}

/// [`Fixture::launcher`] with a subcommand (`check`, `env`) in front of the options.
fn fixture_in(f: &Fixture, sub: &str) -> Command {
    let mut c = launcher(&f.home);
    c.env("VAULT_ADDR", &services().bao.addr).env("VAULT_TOKEN", ROOT_TOKEN).arg(sub);
    c.args(["--credentials", &f.credentials(), "--ca", &f.ca()]);
    c
}

/// Item 1: `--format dotenv` read back by bash, dash and python-dotenv (which is also what Compose v1
/// reads `env_file:` with): the same bytes, nothing run, nothing expanded; what cannot be written
/// so is refused.
#[test]
fn dotenv_output_reads_back_byte_exact_and_runs_nothing() {
    let home = support::home(&unique("dotenv"));
    let marker = home.join("pwned");
    let m = marker.display();
    let representable = [
        format!("`touch {m}`"),
        format!("$(touch {m})"),
        format!("a$b $HOME \\n \\t back\\slash \"q\" #{m}"),
        format!("it's \"quoted\"; touch {m}"),
        "two\nlines".to_owned(),
        " lead and trail ".to_owned(),
    ];
    let python = std::env::current_dir().unwrap().join(".venv/bin/python");
    for password in &representable {
        let reference = kv(&serde_json::json!({"username": "app", "password": password, "host": "localhost"}));
        let run = Run::of(launch_with(&home, &["env"], &reference).args(["--format", "dotenv", "--reveal"]));
        run.assert_ok();
        let file = home.join("app.env");
        std::fs::write(&file, &run.stdout).unwrap();
        for shell in ["bash", "dash"] {
            let out = Command::new(shell)
                .arg("-c")
                .arg("set -a; . \"$1\"; printf %s \"$PGPASSWORD\"")
                .arg(shell)
                .arg(&file)
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout), *password, "{shell} read back:\n{}", run.stdout);
        }
        let out = Command::new(&python)
            .args(["-c", "import sys, dotenv; sys.stdout.write(dotenv.dotenv_values(sys.argv[1])['PGPASSWORD'])"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "python-dotenv: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), *password, "python-dotenv read back:\n{}", run.stdout);
        assert!(!marker.exists(), "sourcing the file ran code:\n{}", run.stdout);
    }
    for password in ["${HOME}", "it's $HOME", "it's `x`", "cr\rhere"] {
        let reference = kv(&serde_json::json!({"username": "app", "password": password, "host": "localhost"}));
        let run = Run::of(launch_with(&home, &["env"], &reference).args(["--format", "dotenv", "--reveal"]));
        run.assert_fails(65, "--format dotenv: PGPASSWORD holds characters no dotenv quoting carries unchanged")
            .assert_no_leak(password);
        assert_eq!(run.stdout, "", "nothing printed: {run}");
    }
}

/// Item 2: A kept PGSERVICE would let a service file send the app over a Unix socket without TLS
/// while the check said ok: refused. Every inherited variable that would weaken the app's
/// connection is overridden, and the app's connection is the one checked.
#[test]
fn nothing_inherited_or_kept_gives_the_app_a_weaker_connection_than_the_check() {
    let s = services();
    let f = Fixture::new();
    let service_file = f.home.join("pg_service.conf");
    let socket = &s.pg.socket_dir;
    std::fs::write(&service_file, format!("[evil]\nhost={}\nsslmode=disable\nuser=postgres\n", socket.display()))
        .unwrap();
    let run = Run::of(
        f.launcher()
            .env("PGSERVICEFILE", &service_file)
            .env("PGSERVICE", "evil")
            .args(["--keep-env", "PGSERVICE", "--"])
            .arg(psql())
            .args(["-XAtc", TLS_ROW]),
    );
    run.assert_fails(64, "--keep-env PGSERVICE: refused").assert_no_leak(&f.password);
    assert_eq!(run.stdout, "", "the app must not run: {run}");
    Run::of(fixture_in(&f, "check").env("LAUNCHER_KEEP_ENV", "PATH,PGSERVICE"))
        .assert_fails(64, "--keep-env PGSERVICE: refused");

    // Everything libpq reads that could weaken or redirect the app, inherited at once.
    let hostile = [
        ("PGSSLMODE", "disable"),
        ("PGGSSENCMODE", "require"),
        ("PGSSLROOTCERT", "/nonexistent/other.crt"),
        ("PGHOST", socket.to_str().unwrap()),
        ("PGHOSTADDR", "127.0.0.1"),
        ("PGPORT", "1"),
        ("PGUSER", "postgres"),
        ("PGDATABASE", "template1"),
        ("PGREQUIRESSL", "0"),
        ("PGSERVICE", "evil"),
        ("PGSERVICEFILE", service_file.to_str().unwrap()),
        ("DATABASE_URL", "postgresql://postgres@localhost/postgres?sslmode=disable"),
    ];
    let row = "select ssl, current_user, current_database() from pg_stat_ssl where pid = pg_backend_pid()";
    let mut cmd = f.launcher();
    for (k, v) in hostile {
        cmd.env(k, v);
    }
    let run = Run::of(cmd.args(["--password-via", "passfile", "--"]).arg(psql()).args(["-XAtc", row]));
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), format!("t|{}|postgres", f.role), "{run}");
    for overridden in ["PGSSLMODE=disable", "PGGSSENCMODE=require", "PGSSLROOTCERT=/nonexistent/other.crt"] {
        assert!(run.stderr.contains(&format!("overriding inherited {overridden}")), "{overridden}: {run}");
    }
    assert!(run.stderr.contains("withholding inherited PGSERVICE"), "{run}");
    assert!(run.stderr.contains("inherited DATABASE_URL reaches the app unchanged and unchecked"), "{run}");
}

/// Item 4: A CA reference holding a private key is refused, and nothing is written.
#[test]
fn a_private_key_in_the_ca_is_refused_and_nothing_is_written() {
    let s = services();
    let f = Fixture::new();
    let runtime = f.home.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let bundle = f.home.join("ca-and-key.pem");
    let ca = std::fs::read_to_string(&s.certs.ca).unwrap();
    let key = std::fs::read_to_string(&s.certs.server_key).unwrap();
    std::fs::write(&bundle, format!("{ca}{key}")).unwrap();
    let run = Run::of(f.launcher().env("RUNTIME_DIRECTORY", &runtime).args([
        "--ca",
        &format!("file:{}", bundle.display()),
        "--",
        "true",
    ]));
    run.assert_fails(65, "holds a private key; a CA bundle holds certificates only").assert_no_leak(&f.password);
    assert_eq!(std::fs::read_dir(&runtime).unwrap().count(), 0, "nothing written: {run}");
}

/// Item 5: A password `.pgpass` cannot hold is refused (the check would pass, psql would fail); one
/// it can, awkward as it is, reaches psql.
#[test]
fn passfile_refuses_what_libpq_cannot_read_back() {
    let s = services();
    let home = support::home(&unique("pgpass"));
    for (password, problem) in [("line\nbreak", "holds a line break"), ("ends-in-cr\r", "ends with a carriage return")]
    {
        let role = unique("pp");
        s.pg.create_role(&role, password);
        let reference = kv(&serde_json::json!({"username": role, "password": password, "host": "localhost",
            "port": s.pg.port, "dbname": "postgres"}));
        let run = Run::of(launch_with(&home, &[], &reference).args(["--password-via", "passfile", "--", "true"]));
        run.assert_fails(65, &format!("--password-via passfile: the password {problem}")).assert_no_leak(password);
    }
    let role = unique("pp");
    let awkward = "#no:comment\\ \r mid";
    s.pg.create_role(&role, awkward);
    let reference = kv(&serde_json::json!({"username": role, "password": awkward, "host": "localhost",
        "port": s.pg.port, "dbname": "postgres"}));
    let run = Run::of(
        launch_with(&home, &[], &reference)
            .args(["--password-via", "passfile", "--"])
            .arg(psql())
            .args(["-XAtc", TLS_ROW]),
    );
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "t", "{run}");
}

/// Item 6: The runtime directory goes with the app: the next launch removes those whose process is
/// gone, and keeps a live one's, another PID namespace's and `launcher env`'s.
#[test]
fn runtime_directories_do_not_pile_up() {
    let f = Fixture::new();
    let base = f.home.join("xdg");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let ns = ns.to_str().unwrap().trim_start_matches("pid:[").trim_end_matches(']').to_owned();
    let live = base.join(format!("launcher-{ns}-{}-0123456789abcdef", std::process::id()));
    let foreign = base.join("launcher-1-999999-0123456789abcdef");
    for planted in [&live, &foreign] {
        std::fs::create_dir(planted).unwrap();
    }
    let ours = |base: &Path| -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(base).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    let env_run = Run::of(fixture_in(&f, "env").env("XDG_RUNTIME_DIR", &base).args(["--password-via", "passfile"]));
    env_run.assert_ok();
    for _ in 0..3 {
        Run::of(f.launcher().env("XDG_RUNTIME_DIR", &base).args(["--password-via", "passfile", "--", "true"]))
            .assert_ok()
            .assert_no_leak(&f.password);
    }
    let names = ours(&base);
    assert_eq!(names.len(), 4, "the last launch's, a live one, a foreign one, env's: {names:?}");
    assert!(names.iter().any(|n| n.starts_with("launcher-env-")), "{names:?}");
    assert!(live.exists() && foreign.exists(), "{names:?}");
    // A failed launch leaves nothing (and sweeps the last one's).
    Run::of(f.launcher().env("XDG_RUNTIME_DIR", &base).args(["--port", "1", "--", "true"])).assert_fails(69, "");
    assert_eq!(ours(&base).len(), 3, "{:?}", ours(&base));
}

/// Item 7: Port 0 is refused where it is given, with the range.
#[test]
fn port_zero_is_refused_wherever_it_comes_from() {
    let f = Fixture::new();
    let home = &f.home;
    for port in [serde_json::json!(0), serde_json::json!("0")] {
        let reference = kv(&serde_json::json!({"username": f.role, "password": f.password, "host": "localhost",
            "port": port}));
        Run::of(launch_with(home, &[], &reference).args(["--", "true"]))
            .assert_fails(65, "#port: is not a port number (1-65535)")
            .assert_no_leak(&f.password);
    }
    Run::of(f.launcher().args(["--port", "0", "--", "true"])).assert_fails(64, "0 is not in 1..=65535");
    let config = home.join("port0.toml");
    std::fs::write(&config, "port = 0\n").unwrap();
    Run::of(f.launcher().arg("--config").arg(&config).args(["--", "true"]))
        .assert_fails(64, "--port: 0 is not a port number (1-65535)");
}

/// Item 9: `launcher check --output json` prints one object whatever happens.
#[test]
fn check_json_reports_failures_too() {
    let s = services();
    let f = Fixture::new();
    let closed = support::free_port_pair().to_string();
    let other_ca = format!("file:{}", s.certs.other_ca.display());
    let overridden = serde_json::json!(["overriding inherited PGSSLMODE=prefer with verify-full"]);
    // The environment's warnings come once the secrets are read: a failed fetch has none.
    let cases: [([&str; 2], i64, &str, &str, serde_json::Value); 3] = [
        (["--ca", &other_ca], 76, "refused", "certificate verify failed", overridden.clone()),
        (["--port", &closed], 69, "unreachable", "connection to server at localhost", overridden),
        (
            ["--ca", "file:/nonexistent/ca.pem"],
            73,
            "file-error",
            "cannot read /nonexistent/ca.pem",
            serde_json::json!([]),
        ),
    ];
    for (args, code, verdict, error, warnings) in cases {
        let run = Run::of(fixture_in(&f, "check").env("PGSSLMODE", "prefer").args(["--output", "json"]).args(args));
        assert_eq!(i64::from(run.code), code, "{run}");
        run.assert_no_leak(&f.password);
        let r: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
        assert_eq!(r["verdict"], verdict, "{run}");
        assert_eq!(r["exit_code"], code, "{run}");
        assert!(r["error"].as_str().unwrap().contains(error), "{run}");
        assert_eq!(r["warnings"], warnings, "{run}");
        assert!(r["timings"].is_object(), "{run}");
    }
}

/// Item 10: Values in human log lines cannot forge a line or reach the terminal raw.
#[test]
fn log_lines_escape_control_characters() {
    let f = Fixture::new();
    let forged = "x\nlauncher: error: forged\u{1b}[31m\u{202e}";
    let reference = kv(&serde_json::json!({"username": f.role, "password": f.password, "host": "localhost",
        "port": services().pg.port.to_string(), "dbname": "postgres", forged: "y"}));
    let run = Run::of(launch_with(&f.home, &[], &reference).args(["--", "true"]));
    run.assert_ok().assert_no_leak(&f.password);
    assert!(!run.stderr.lines().any(|l| l.starts_with("launcher: error: forged")), "{run}");
    assert!(!run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{202e}'), "{run}");
    assert!(run.stderr.contains("x\\nlauncher: error: forged\\u{1b}[31m\\u{202e}"), "{run}");
}

/// The smaller items: each a wrong answer a user would hit.
#[test]
fn smaller_holes_are_closed() {
    let s = services();
    let f = Fixture::new();
    // A missing program is found before any request: a closed Vault port is never reached.
    let closed = support::free_port_pair();
    let mut cmd = launcher(&f.home);
    cmd.env("VAULT_ADDR", format!("http://127.0.0.1:{closed}")).env("VAULT_TOKEN", ROOT_TOKEN);
    Run::of(cmd.args(["--credentials", &f.credentials(), "--ca", &f.ca(), "--", "/nonexistent/app"]))
        .assert_fails(127, "/nonexistent/app: command not found");
    let not_exec = f.home.join("not-exec");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let mut cmd = launcher(&f.home);
    cmd.env("VAULT_ADDR", format!("http://127.0.0.1:{closed}")).env("VAULT_TOKEN", ROOT_TOKEN);
    Run::of(cmd.args(["--credentials", &f.credentials(), "--ca", &f.ca(), "--"]).arg(&not_exec))
        .assert_fails(126, "permission denied");

    // A single JSON file with a certificate and a password, readable by others, is named.
    let json = f.home.join("db.json");
    let ca = std::fs::read_to_string(&s.certs.ca).unwrap();
    std::fs::write(
        &json,
        serde_json::json!({"username": f.role, "password": f.password, "host": "localhost",
            "port": s.pg.port, "dbname": "postgres", "ca": ca})
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&json, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = format!("file:{}", json.display());
    let run = Run::of(launcher(&f.home).args(["--credentials", &file, "--ca", &format!("{file}#ca"), "--", "true"]));
    run.assert_ok().assert_no_leak(&f.password);
    assert!(run.stderr.contains(&format!("{} is readable by others (mode 0644)", json.display())), "{run}");

    // Boolean variables take 0/1/true/false/yes/no.
    let run = Run::of(f.launcher().env("LAUNCHER_VERBOSE", "0").args(["--", "true"]));
    run.assert_ok();
    assert!(!run.stderr.contains("secrets fetched in"), "not verbose: {run}");
    let run = Run::of(f.launcher().env("LAUNCHER_VERBOSE", "yes").env("LAUNCHER_PRISTINE", "no").args(["--", "true"]));
    assert!(run.stderr.contains("secrets fetched in"), "verbose: {run}");

    // The API path of a KV v2 secret gets the path to write instead.
    let api_path = format!("vault:secret/data/{}", f.kv_path);
    Run::of(launch_with(&f.home, &[], &api_path).args(["--", "true"]))
        .assert_fails(78, &format!("KV v2 paths are written without \"data/\": vault:secret/{}", f.kv_path));

    // Under --wait, where the secrets come from is said once; each retry says why and when.
    let run = Run::of(f.launcher().args(["--port", &closed.to_string(), "--wait", "1500ms", "--", "true"]));
    run.assert_fails(75, "still unavailable after waiting");
    assert_eq!(run.stderr.matches("Vault at ").count(), 1, "{run}");
    assert_eq!(run.stderr.matches("credentials from ").count(), 1, "{run}");
    assert!(run.stderr.contains("attempt 2 failed, retrying in "), "{run}");

    // A password too long for PBKDF2 to be quick, or one no environment can carry, is refused
    // before connecting.
    for (password, problem) in
        [("p".repeat(5000), "is longer than 4096 bytes"), ("nul\0byte".to_owned(), "holds a NUL byte")]
    {
        let reference = kv(&serde_json::json!({"username": f.role, "password": password, "host": "localhost",
            "port": s.pg.port, "dbname": "postgres"}));
        let started = Instant::now();
        Run::of(launch_with(&f.home, &[], &reference).args(["--", "true"]))
            .assert_fails(65, &format!("the password from {reference} {problem}"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
