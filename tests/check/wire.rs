//! `launcher check` on the wire as libpq speaks it: the key share, SNI, start-up settings, junk
//! variables, SASLprep'd passwords and a P-521-only server.

use super::{launcher_as, libpq_env, psql_as, report};
use crate::support::{self, Pg, Run, canary, services, unique};

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
    // Host and port lists are walked (check/hosts.rs); a port that is no number is refused.
    let (mut cmd, _, _) = libpq_env(&home);
    let port = services().pg.port;
    Run::of(cmd.env("PGPORT", format!("{port},x")).arg("check")).assert_fails(78, "PGPORT: \"x\" is not a port number");
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
