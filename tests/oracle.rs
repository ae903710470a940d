//! The oracle: for each certificate case, a real PostgreSQL serves the certificate and both
//! `psql` (libpq, `sslmode=verify-full`; Debian 12's 15, and 17 and 18 from PyPI, which must all
//! agree) and `launcher check` run under the same environment.
//! Any disagreement on the verdict fails the test, and so does a libpq TLS refusal whose
//! words the launcher does not repeat. The table is printed either way.

mod cases;
mod certs;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use openssl::x509::X509;

use crate::support::{self, Pg, Run, canary, launcher, pg::psql, services, unique};

use cases::{Case, Crl, Root, cases, seclevel_conf};
use certs::{Issued, Spec, ca, issue, leaf, localhost, pem};

/// One side's verdict.
struct Verdict {
    ok: bool,
    reason: String,
}

/// The cluster the oracle swaps certificates on.
struct Server {
    pg: Pg,
    tls_dir: PathBuf,
}

impl Server {
    fn serve(&self, case: &Case) {
        let leaf_pem = case.served[0].to_pem().unwrap();
        let chain: Vec<&X509> = case.served.iter().collect();
        std::fs::write(self.tls_dir.join("server.crt"), pem(&chain)).unwrap();
        std::fs::write(self.tls_dir.join("server.key"), case.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        self.pg.sql("select pg_reload_conf()");
        // Wait until the server presents the new certificate.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("openssl")
                .args(["s_client", "-starttls", "postgres", "-cipher", "DEFAULT:@SECLEVEL=0"])
                .args(["-connect", &format!("127.0.0.1:{}", self.pg.port)])
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if let (Some(a), Some(b)) =
                (text.find("-----BEGIN CERTIFICATE-----"), text.find("-----END CERTIFICATE-----"))
            {
                let served = &text[a..b + "-----END CERTIFICATE-----".len()];
                if served.trim() == String::from_utf8_lossy(&leaf_pem).trim() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: the server did not switch certificates:\n{}",
                case.name,
                std::fs::read_to_string(&self.pg.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The libpq environment for one case (files written under `dir`).
fn environment(case: &Case, dir: &Path, port: u16, user: &str, password: &str) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir.join("home/.postgresql")).unwrap();
    let mut env = vec![
        ("HOME".to_owned(), dir.join("home").display().to_string()),
        ("PGHOST".to_owned(), case.host.clone()),
        ("PGPORT".to_owned(), port.to_string()),
        ("PGUSER".to_owned(), user.to_owned()),
        ("PGPASSWORD".to_owned(), password.to_owned()),
        ("PGDATABASE".to_owned(), "postgres".to_owned()),
        ("PGSSLMODE".to_owned(), "verify-full".to_owned()),
        ("PGCONNECT_TIMEOUT".to_owned(), "5".to_owned()),
    ];
    if let Some(addr) = case.hostaddr {
        env.push(("PGHOSTADDR".into(), addr.to_string()));
    }
    let root = dir.join("root.crt");
    match &case.root {
        Root::Certs(certs) => std::fs::write(&root, pem(&certs.iter().collect::<Vec<_>>())).unwrap(),
        Root::Bytes(b) => std::fs::write(&root, b).unwrap(),
        Root::Missing => {}
        Root::Trusted(cert, [option, purpose]) => {
            let plain = dir.join("root-plain.crt");
            std::fs::write(&plain, cert.to_pem().unwrap()).unwrap();
            support::run_ok(
                Command::new("openssl")
                    .args(["x509", "-trustout", option, purpose, "-in"])
                    .arg(&plain)
                    .arg("-out")
                    .arg(&root),
            );
        }
        Root::HomeDefault(certs) => {
            std::fs::write(dir.join("home/.postgresql/root.crt"), pem(&certs.iter().collect::<Vec<_>>())).unwrap();
        }
    }
    if !matches!(case.root, Root::HomeDefault(_)) {
        env.push(("PGSSLROOTCERT".into(), root.display().to_string()));
    }
    if let Some(level) = case.seclevel {
        let conf = dir.join("openssl.cnf");
        std::fs::write(&conf, seclevel_conf(level)).unwrap();
        env.push(("OPENSSL_CONF".into(), conf.display().to_string()));
    }
    match &case.crl {
        Crl::None => {}
        Crl::File(bytes) => {
            std::fs::write(dir.join("root.crl"), bytes).unwrap();
            env.push(("PGSSLCRL".into(), dir.join("root.crl").display().to_string()));
        }
        Crl::Dir(bytes) => {
            let crl_dir = dir.join("crls");
            std::fs::create_dir_all(&crl_dir).unwrap();
            std::fs::write(crl_dir.join("root.crl.pem"), bytes).unwrap();
            support::run_ok(Command::new("openssl").arg("rehash").arg(&crl_dir));
            env.push(("PGSSLCRLDIR".into(), crl_dir.display().to_string()));
        }
        Crl::HomeDefault(bytes) => std::fs::write(dir.join("home/.postgresql/root.crl"), bytes).unwrap(),
        Crl::MissingFile => env.push(("PGSSLCRL".into(), dir.join("no-such.crl").display().to_string())),
        Crl::MissingDir => env.push(("PGSSLCRLDIR".into(), dir.join("no-such-dir").display().to_string())),
        Crl::MissingFileAndDir => {
            env.push(("PGSSLCRL".into(), dir.join("no-such.crl").display().to_string()));
            env.push(("PGSSLCRLDIR".into(), dir.join("no-such-dir").display().to_string()));
        }
    }
    env
}

fn libpq_verdict(env: &[(String, String)]) -> Verdict {
    libpq_verdict_of(&psql(), env)
}

/// The verdict of the psql (and so the libpq) at `psql`.
fn libpq_verdict_of(psql: &Path, env: &[(String, String)]) -> Verdict {
    let out = Command::new(psql)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["-XAtc", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    Verdict { ok: out.status.success() && stdout.trim() == "t", reason: libpq_reason(&stderr) }
}

/// The part of psql's error after "failed: " (or the whole first line).
fn libpq_reason(stderr: &str) -> String {
    let text = stderr.trim().replace("psql: error: ", "");
    let first = text.lines().next().unwrap_or_default();
    first.rsplit_once("failed: ").map_or(first, |(_, r)| r).replace("FATAL:  ", "").trim().to_owned()
}

/// A driver's app (`app`) run directly with `env` and the variables `launcher env --driver
/// DRIVER` would set for the app on top: the driver's own verdict and words on the connection
/// the launcher would hand it.
fn driver_verdict(mut app: Command, driver: &str, env: &[(String, String)], home: &Path) -> Verdict {
    let set = Run::of(
        launcher(home)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["env", "--driver", driver, "--format", "json", "--reveal"]),
    );
    let set: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&set.stdout).unwrap_or_default();
    let out = app
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(set.iter().map(|(k, v)| (k, v.as_str().unwrap_or_default())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    Verdict { ok: out.status.success() && matches!(stdout.trim(), "true" | "t"), reason: stderr.trim().to_owned() }
}

fn launcher_verdict(env: &[(String, String)], home: &Path, args: &[&str]) -> (Verdict, Run) {
    let run = Run::of(launcher(home).envs(env.iter().map(|(k, v)| (k, v))).arg("check").args(args));
    let reason = run.stderr.lines().find_map(|l| l.strip_prefix("launcher: error: ")).unwrap_or_default().to_owned();
    (Verdict { ok: run.code == 0, reason }, run)
}

/// The part of a driver's error that names the refusal (after pgx's "failed to connect to …"
/// prefix, without the parenthesis that closes it).
fn driver_words(reason: &str) -> &str {
    // pgjdbc logs lines before its exception's message, which comes last.
    let reason = reason.lines().last().unwrap_or_default();
    let start = [
        "x509: ",
        "remote error: ",
        "cannot parse",
        "invalid peer certificate: ",
        "received fatal alert: ",
        "[SSL: ",
        "FileNotFoundError",
    ]
    .iter()
    .filter_map(|p| reason.find(p))
    .min()
    .unwrap_or(0);
    let words = &reason[start..];
    // rustls's `…Context { signature_algorithm_id: […], supported_algorithms: […] }`: the name
    // is the verdict, the launcher names the algorithm instead of the list.
    let words = words.split_once(" {").map_or(words, |(name, _)| name);
    // Python's ssl ends with where in `_ssl.c` it raised.
    let words = words.split_once(" (_ssl.c:").map_or(words, |(words, _)| words);
    let opened = words.matches('(').count();
    let closed = words.matches(')').count();
    if closed > opened { words.strip_suffix(')').unwrap_or(words) } else { words }
}

/// libpq's refusals that the launcher must repeat word for word.
const LIBPQ_PHRASES: &[&str] = &[
    "could not find digest for NID",
    "server certificate for",
    "could not get server's host name from server certificate",
    "SSL error: certificate verify failed",
    "root certificate file",
    "could not read root certificate file",
    "host name must be specified",
];

#[test]
fn launcher_check_agrees_with_libpq_on_every_certificate_case() {
    let s = services();
    let dir = s.root.join("oracle");
    // Security level 0 on the server, so that it serves the weak-key and SHA-1 cases at all; the
    // clients keep the system's level unless a case says otherwise.
    std::fs::create_dir_all(&dir).unwrap();
    let server_conf = dir.join("openssl-seclevel0.cnf");
    std::fs::write(&server_conf, seclevel_conf(0)).unwrap();
    let custom = support::pg::Custom { openssl_conf: Some(&server_conf), ..Default::default() };
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let pg = Pg::start_custom(&dir.join("pg"), cert, key, true, support::free_port_pair(), None, Some(custom));
    let server = Server { tls_dir: dir.join("pg/tls"), pg };
    let user = unique("oracle");
    let password = canary();
    server.pg.create_role(&user, &password);

    let cases = cases();
    let mut table = String::new();
    let mut problems = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        server.serve(case);
        let case_dir = dir.join(format!("case-{i}"));
        let env = environment(case, &case_dir, server.pg.port, &user, &password);
        let libpq = libpq_verdict(&env);
        // Today's libpq (17, 18: what apps link, psycopg's wheels bundle 18) must give the same
        // verdict in the same words as Debian 12's 15, which the launcher is held to below.
        for major in [17, 18] {
            let newer = libpq_verdict_of(&support::pg::newer(major).join("psql"), &env);
            if (newer.ok, &newer.reason) != (libpq.ok, &libpq.reason) {
                problems.push(format!(
                    "{}: libpq {major} {} ({:?}) but libpq 15 {} ({:?}): the launcher must say which it judges for",
                    case.name, newer.ok, newer.reason, libpq.ok, libpq.reason
                ));
            }
        }
        let (ours, run) = launcher_verdict(&env, &case_dir.join("home"), &[]);
        // The app's drivers (issue 15): the launcher with --driver D refuses exactly when libpq
        // or D, given what the launcher hands the app, would, and in D's words; D that ignores
        // PGHOSTADDR makes the launcher refuse that combination outright.
        let home = case_dir.join("home");
        let mut judged = Vec::new();
        // libpq's app is psql, above.
        for (driver, app) in &DRIVER_APPS[1..] {
            let theirs = driver_verdict(app(), driver, &env, &home);
            let (ours_d, run_d) = launcher_verdict(&env, &home, &["--driver", driver]);
            run_d.assert_no_leak(&password);
            if case.hostaddr.is_some() {
                if run_d.code != 78 || !ours_d.reason.contains("ignores it") {
                    problems
                        .push(format!("{}: --driver {driver} with PGHOSTADDR must be refused:\n{run_d}", case.name));
                }
            } else if ours_d.ok != (libpq.ok && theirs.ok) {
                problems.push(format!(
                    "{}: libpq {} and {driver} {} but launcher --driver {driver} {}: {}\n    {driver}: {}",
                    case.name, libpq.ok, theirs.ok, ours_d.ok, ours_d.reason, theirs.reason
                ));
            } else if libpq.ok && !theirs.ok {
                let words = driver_words(&theirs.reason);
                if !ours_d.reason.contains(words) {
                    problems.push(format!("{}: {driver} says {words:?}, launcher says {:?}", case.name, ours_d.reason));
                }
            }
            judged.push(format!("{driver}={}", if theirs.ok { "ok" } else { "refuse" }));
        }
        let agree = libpq.ok == ours.ok;
        if libpq.ok {
            accepted += 1;
        } else {
            refused += 1;
        }
        let _ = writeln!(
            table,
            "{:>2} {:<52} libpq={:<6} launcher={:<6} {} {}\n     libpq: {}\n     ours:  {}",
            i + 1,
            case.name,
            if libpq.ok { "ok" } else { "refuse" },
            if ours.ok { "ok" } else { "refuse" },
            judged.join(" "),
            if agree { "" } else { "<-- DISAGREE" },
            libpq.reason,
            ours.reason,
        );
        if !agree {
            problems.push(format!("{}: libpq {} but launcher {}", case.name, libpq.ok, ours.ok));
        } else if !libpq.ok {
            if let Some(phrase) = LIBPQ_PHRASES.iter().find(|p| libpq.reason.contains(**p)) {
                let libpq_line = libpq.reason.lines().next().unwrap_or_default();
                let expected = if *phrase == "SSL error: certificate verify failed" { phrase } else { libpq_line };
                if !ours.reason.contains(expected) {
                    problems.push(format!("{}: libpq says {libpq_line:?}, launcher says {:?}", case.name, ours.reason));
                }
            }
            if !matches!(run.code, 76 | 77 | 78 | 69) {
                problems.push(format!("{}: unexpected exit code {}", case.name, run.code));
            }
        }
    }
    println!("{table}");
    println!("{} cases: libpq accepted {accepted}, refused {refused}", cases.len());
    assert!(cases.len() >= 40, "the oracle needs at least 40 cases");
    assert!(accepted >= 10 && refused >= 10, "both directions must be covered");
    assert!(problems.is_empty(), "launcher and libpq disagree:\n{}\n\n{table}", problems.join("\n"));
}

/// Makes the command that runs a driver's app.
type App = fn() -> Command;

/// Each driver's real app, as `launcher --driver NAME -- app` would run it; libpq's first.
const DRIVER_APPS: &[(&str, App)] = &[
    ("libpq", || {
        let mut psql = Command::new(psql());
        psql.args(["-XAtc", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"]);
        psql
    }),
    ("pgx", || Command::new(support::drivers::pgx_app())),
    ("rustls", support::drivers::rustls_app),
    ("asyncpg", support::drivers::asyncpg_app),
    ("pgjdbc", support::drivers::pgjdbc_app),
    ("node-postgres", support::drivers::node_app),
];

/// Issue 15's matrix, launched for real: for each driver, certificate (the seed article's
/// CN-only self-signed CA, a CA-signed leaf with a SAN, an X.509 v1 leaf, a CA:TRUE leaf) and
/// situation (the right CA, another CA with the same subject, a host name the certificate does
/// not carry, a server without TLS), `launcher --driver D -- app` either runs the app, which
/// then has a TLS session, or refuses before the app runs; and it runs the app exactly when the
/// app, run alone with the same settings and what `launcher env --driver D` gives it, connects
/// and libpq would too (the check is libpq's and the driver's: node-postgres, which checks an IP
/// host's certificate against "localhost", connects alone where libpq, and so the launcher,
/// refuses).
#[test]
fn behind_the_launcher_each_driver_connects_with_tls_exactly_when_it_would_alone() {
    let s = services();
    let dir = s.root.join("matrix");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let pg = Pg::start_custom(&dir.join("pg"), cert, key, true, support::free_port_pair(), None, None);
    let server = Server { tls_dir: dir.join("pg/tls"), pg };
    let plain = Pg::start(&dir.join("pg-plain"), &s.certs, false);
    let user = unique("matrix");
    let password = canary();
    server.pg.create_role(&user, &password);
    plain.create_role(&user, &password);

    let root = ca("matrix root");
    let imposter = ca("matrix root");
    let seed_spec = Spec { cn: Some("localhost"), ca: Some(true), rsa: Some(2048), ..Spec::default() };
    let seed = issue(&seed_spec, None);
    let seed_imposter = issue(&seed_spec, None);
    let v1 = Spec { cn: Some("localhost"), v1: true, ..Spec::default() };
    let certs = [
        ("seed article's CN-only self-signed CA", seed.clone(), seed.clone(), seed_imposter),
        ("leaf with SAN", leaf(&root, &localhost()), root.clone(), imposter.clone()),
        ("X.509 v1 leaf", leaf(&root, &v1), root.clone(), imposter.clone()),
        ("CA:TRUE leaf", leaf(&root, &Spec { ca: Some(true), ..localhost() }), root.clone(), imposter.clone()),
    ];
    // (which certificate is served, the situation), a certificate's situations in a row.
    let root_file = |ca: &Issued| Root::Certs(vec![ca.cert.clone()]);
    let mut runs = Vec::new();
    for (n, (name, served, right, wrong)) in certs.iter().enumerate() {
        runs.push((Some(n), Case::new(&format!("{name}, right CA"), served, &[], root_file(right))));
        runs.push((Some(n), Case::new(&format!("{name}, same-subject other CA"), served, &[], root_file(wrong))));
        let mismatch = Case::new(&format!("{name}, host mismatch"), served, &[], root_file(right));
        runs.push((Some(n), mismatch.host("127.0.0.1")));
    }
    runs.push((None, Case::new("server without TLS", &certs[1].1, &[], root_file(&root))));
    let mut table = String::new();
    let mut problems = Vec::new();
    let mut connected = 0;
    let mut serving = None;
    for (i, (cert, case)) in runs.iter().enumerate() {
        if cert.is_some() && *cert != serving {
            server.serve(case);
            serving = *cert;
        }
        let port = if cert.is_some() { server.pg.port } else { plain.port };
        let case_dir = dir.join(format!("case-{i}"));
        let env = environment(case, &case_dir, port, &user, &password);
        let home = case_dir.join("home");
        let mut row = Vec::new();
        let mut libpq_ok = None;
        for (driver, app) in DRIVER_APPS {
            let alone = driver_verdict(app(), driver, &env, &home);
            let libpq_ok = *libpq_ok.get_or_insert(alone.ok);
            let app = app();
            let mut behind = launcher(&home);
            behind.envs(env.iter().map(|(k, v)| (k, v))).args(["--driver", driver, "--"]);
            behind.arg(app.get_program()).args(app.get_args());
            let run = Run::of(&mut behind);
            run.assert_no_leak(&password);
            let ran_with_tls = run.code == 0 && matches!(run.stdout.trim(), "true" | "t");
            let refused_first = matches!(run.code, 69 | 76 | 77 | 78)
                && run.stdout.is_empty()
                && run.stderr.contains("launcher: error: ");
            if !ran_with_tls && !refused_first {
                problems.push(format!(
                    "{}: {driver} behind the launcher neither connected with TLS nor was refused first:\n{run}",
                    case.name
                ));
            } else if ran_with_tls != (alone.ok && libpq_ok) {
                problems.push(format!(
                    "{}: {driver} alone {} (libpq {}) but behind the launcher {}\n    alone: {}\n{run}",
                    case.name,
                    if alone.ok { "connects" } else { "fails" },
                    if libpq_ok { "connects" } else { "fails" },
                    if ran_with_tls { "connected" } else { "was refused" },
                    alone.reason
                ));
            }
            connected += usize::from(ran_with_tls);
            let outcome = match (ran_with_tls, alone.ok) {
                (true, _) => "tls",
                (false, true) => "refused(libpq)",
                (false, false) => "refused",
            };
            row.push(format!("{driver}={outcome}"));
        }
        let _ = writeln!(table, "{:>2} {:<52} {}", i + 1, case.name, row.join(" "));
    }
    println!("{table}");
    assert!(connected >= 6, "some runs must connect: {table}");
    assert!(problems.is_empty(), "{}\n\n{table}", problems.join("\n"));
}
