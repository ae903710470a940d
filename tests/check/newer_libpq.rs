//! `launcher check` against what libpq 16–18 read and psql 15 does not: direct TLS, PGREQUIREAUTH,
//! `sslrootcert=system`, and every variable the libraries themselves name.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::{launcher_as, libpq_env, psql_of, report};
use crate::support::{self, Pg, Run, services, unique};

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

#[test]
fn sslcertmode_is_judged_as_libpq_17_and_18_judge_it() {
    let s = services();
    let (v17, v18) = (support::pg::newer(17), support::pg::newer(18));
    // A server that asks for a client certificate (it has a CA for them) and lets most roles in
    // without one, but not `strict` (clientcert=verify-ca); the shared server asks for none.
    let dir = s.root.join(unique("pg-asks"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("client-ca.crt");
    std::fs::copy(&s.certs.ca, &ca).unwrap();
    let strict = unique("strict");
    let hba = format!(
        "local all all trust\nhostssl all {strict} 127.0.0.0/8 scram-sha-256 clientcert=verify-ca\n\
         hostssl all all 127.0.0.0/8 scram-sha-256\n"
    );
    let conf = format!("ssl_ca_file = '{}'\n", ca.display());
    let custom = support::pg::Custom { conf: &conf, hba: Some(&hba), ..Default::default() };
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let asks = Pg::start_custom(&dir, cert, key, true, support::free_port_pair(), None, Some(custom));
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    asks.create_role(&role, &password);
    asks.create_role(&strict, &password);
    // A client certificate from the CA the server trusts; the key 0600, as libpq wants it.
    let issued = support::certs::issue(
        &home,
        "client",
        &(s.certs.ca.clone(), s.certs.ca_key.clone()),
        "/CN=client",
        "extendedKeyUsage=clientAuth",
    );
    std::fs::set_permissions(&issued.1, std::fs::Permissions::from_mode(0o600)).unwrap();
    let missing = home.join("no-such.crt");
    let targets = [
        (s.pg.port, role.as_str(), "asks for none"),
        (asks.port, role.as_str(), "asks"),
        (asks.port, strict.as_str(), "insists"),
    ];
    for (port, user, server) in targets {
        for (cert, has) in [(&issued.0, "a certificate"), (&missing, "no certificate")] {
            for mode in ["allow", "require", "disable"] {
                let case = format!("PGSSLCERTMODE={mode}, a server that {server}, {has}");
                let libpq = |psql: &Path| {
                    let sql = "select coalesce(client_dn, '') from pg_stat_ssl where pid = pg_backend_pid()";
                    let out = psql_of(psql, port, user, &password, sql)
                        .envs([("PGSSLCERTMODE", mode)])
                        .env("PGSSLCERT", cert)
                        .env("PGSSLKEY", &issued.1)
                        .output()
                        .unwrap();
                    let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned(), said)
                };
                let (ok17, dn17, said17) = libpq(&v17.join("psql"));
                let (ok18, dn18, said18) = libpq(&v18.join("psql"));
                assert_eq!((ok17, &dn17), (ok18, &dn18), "{case}: libpq 17 and 18 disagree: {said17} / {said18}");
                let run = Run::of(
                    launcher_as(&home, port, user, &password)
                        .env("PGSSLCERTMODE", mode)
                        .env("PGSSLCERT", cert)
                        .env("PGSSLKEY", &issued.1)
                        .arg("check"),
                );
                run.assert_no_leak(&password);
                if ok18 {
                    run.assert_ok();
                } else {
                    let words = said18.split_once("failed: ").map_or(said18.as_str(), |(_, w)| w);
                    let words = words.trim_start_matches("FATAL:  ");
                    assert!(run.code != 0 && run.stderr.contains(words), "{case}: libpq 18 says {said18:?}:\n{run}");
                    if words.contains("SSL certificate") {
                        assert_eq!(run.code, 77, "{case}: {run}");
                    }
                }
                eprintln!(
                    "{case}: libpq {}",
                    if ok18 { format!("connects, client_dn {dn18:?}") } else { said18.clone() }
                );
            }
        }
    }
    // libpq's words for a value it does not know (an empty one too), before anything is fetched.
    for value in ["", "DISABLE", "sometimes"] {
        let out =
            psql_of(&v18.join("psql"), s.pg.port, &role, &password, "select 1").env("PGSSLCERTMODE", value).output();
        let said = String::from_utf8_lossy(&out.unwrap().stderr).trim().replace("psql: error: ", "");
        let run = Run::of(launcher_as(&home, s.pg.port, &role, &password).env("PGSSLCERTMODE", value).arg("check"));
        run.assert_fails(78, &format!("PGSSLCERTMODE: {said}"));
    }
}

#[test]
fn protocol_versions_are_judged_as_libpq_18_judges_them() {
    // libpq 18 asks for protocol 3.2 when its maximum allows and, with a minimum of 3.2, gives up
    // on a server that answers it speaks 3.0 only (PostgreSQL before 18), without walking on.
    let s = services();
    let v18 = support::pg::newer(18);
    let custom = support::pg::Custom { bindir: Some(&v18), ..Default::default() };
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let pg18 =
        Pg::start_custom(&s.root.join(unique("pg18")), cert, key, true, support::free_port_pair(), None, Some(custom));
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    pg18.create_role(&role, &password);
    let psql18 = v18.join("psql");
    let ports = |ports: &[u16]| ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let servers: [(&str, Vec<u16>); 4] = [
        ("PostgreSQL 15", vec![s.pg.port]),
        ("PostgreSQL 18", vec![pg18.port]),
        ("15, then 18", vec![s.pg.port, pg18.port]),
        ("18, then 15", vec![pg18.port, s.pg.port]),
    ];
    let settings: [&[(&str, &str)]; 7] = [
        &[("PGMINPROTOCOLVERSION", "3.0")],
        &[("PGMAXPROTOCOLVERSION", "3.2")],
        &[("PGMAXPROTOCOLVERSION", "latest")],
        &[("PGMINPROTOCOLVERSION", "3.2")],
        &[("PGMINPROTOCOLVERSION", "latest"), ("PGMAXPROTOCOLVERSION", "latest")],
        &[("PGMINPROTOCOLVERSION", "3.2"), ("PGMAXPROTOCOLVERSION", "3.0")],
        &[("PGMAXPROTOCOLVERSION", "3.1")],
    ];
    let mut refused = 0;
    for (name, list) in &servers {
        let hosts = vec!["localhost"; list.len()].join(",");
        for env in settings {
            let case = format!("{name}, {env:?}");
            let out = psql_of(&psql18, list[0], &role, &password, "select 1")
                .env("PGHOST", &hosts)
                .env("PGPORT", ports(list))
                .envs(env.iter().copied())
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stderr).trim().replace("psql: error: ", "");
            let run = Run::of(
                launcher_as(&home, list[0], &role, &password)
                    .env("PGHOST", &hosts)
                    .env("PGPORT", ports(list))
                    .envs(env.iter().copied())
                    .arg("check"),
            );
            run.assert_no_leak(&password);
            if out.status.success() {
                assert_eq!(run.code, 0, "{case}: libpq 18 connects:\n{run}");
            } else {
                refused += 1;
                let words = said.split_once("failed: ").map_or(said.as_str(), |(_, w)| w);
                assert!(run.code == 78 && run.stderr.contains(words), "{case}: libpq 18 says {said:?}:\n{run}");
            }
        }
    }
    // The minimum of 3.2 against 15 (alone or first in the list), and the two bad settings.
    assert_eq!(refused, 2 * 2 + 2 * 4, "cases libpq 18 refused");
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
    // libpq 18 reads PGOAUTHDEBUG; the check does not judge it: it connects as before and says
    // what it left to the app's libpq. (PGREQUIREAUTH, PGSSLNEGOTIATION, PGSSLCERTMODE and the
    // protocol versions are honoured: the tests above.)
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
    let newer = [("PGOAUTHDEBUG", 18)];
    for (var, version) in newer {
        let expected = format!("{var} is not judged by the check (libpq {version} and later read it)");
        assert!(warnings.iter().any(|w| w.starts_with(&expected)), "{var}: {warnings:?}");
    }
    let honoured = ["PGSSLNEGOTIATION", "PGREQUIREAUTH", "PGSSLCERTMODE", "PROTOCOLVERSION"];
    assert!(!warnings.iter().any(|w| honoured.iter().any(|var| w.contains(var))), "{warnings:?}");
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
