//! Host lists (`PGHOST`/`PGPORT`/`PGHOSTADDR` with several entries) and `PGTARGETSESSIONATTRS`,
//! walked by the check as libpq walks them: psql 15, 17 and 18 are the oracle, on a primary and
//! its streaming standby.

use std::path::{Path, PathBuf};

use super::{launcher_as, libpq_env, psql_of, report};
use crate::support::{self, Pg, Run, services, unique};

/// The psql of each libpq the oracle speaks for.
fn psqls() -> [PathBuf; 3] {
    [support::pg::psql(), support::pg::newer(17).join("psql"), support::pg::newer(18).join("psql")]
}

/// The ports as libpq's list.
fn list(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// Hosts, ports, libpq variables, and the exit code the check gives where libpq fails.
type Case<'a> = (&'a str, Vec<u16>, &'a [(&'a str, &'a str)], i32);

/// A port nothing listens on.
fn dead_port() -> u16 {
    let port = support::free_port_pair();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    port
}

/// What psql at `psql` makes of `hosts`/`ports` with `vars`: the port of the server it
/// reached (`inet_server_port()`), or its error.
fn libpq_reaches(
    psql: &Path,
    hosts: &str,
    ports: &[u16],
    vars: &[(&str, &str)],
    role: &str,
    pw: &str,
) -> Result<u16, String> {
    let mut cmd = psql_of(psql, 0, role, pw, "select inet_server_port()");
    cmd.env("PGHOST", hosts).env("PGPORT", list(ports)).envs(vars.iter().copied());
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("{said}")))
    } else {
        Err(said)
    }
}

/// The check's verdict on the same, as a JSON report.
fn check(home: &Path, hosts: &str, ports: &[u16], vars: &[(&str, &str)], role: &str, pw: &str) -> Run {
    let mut cmd = launcher_as(home, 0, role, pw);
    cmd.env("PGHOST", hosts).env("PGPORT", list(ports)).envs(vars.iter().copied());
    let run = Run::of(cmd.args(["check", "--output", "json"]));
    run.assert_no_leak(pw);
    run
}

/// The port of the server the check chose.
fn chosen(run: &Run) -> u16 {
    let server = report(run)["server"].as_str().unwrap_or_else(|| panic!("{run}")).to_owned();
    server.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("{run}"))
}

#[test]
fn host_lists_are_walked_as_libpq_walks_them_and_stop_where_it_stops() {
    let s = services();
    let home = support::home(&unique("chk-home"));
    let (_, role, password) = libpq_env(&home);
    let live = s.pg.port;
    let dead = dead_port();
    // A server where the role's password is another one: libpq does not go on after a failed
    // authentication.
    let other = Pg::start(&s.root.join(unique("pg-other")), &s.certs, true);
    other.create_role(&role, &support::canary());
    let cases: [Case<'_>; 6] = [
        ("localhost,localhost", vec![dead, live], &[], 0),
        ("localhost,localhost,localhost", vec![dead, dead, live], &[], 0),
        ("localhost,localhost", vec![dead, dead], &[], 69),
        ("localhost,localhost", vec![other.port, live], &[], 77),
        // The certificate names localhost and 127.0.0.1, not 127.0.0.2: verify-full fails there.
        ("127.0.0.2,localhost", vec![live, live], &[], 76),
        // PGHOSTADDR dials the first address, the name checked stays localhost.
        ("localhost,localhost", vec![live, live], &[("PGHOSTADDR", "127.0.0.2,")], 0),
    ];
    for (hosts, ports, vars, failing) in &cases {
        let ours = check(&home, hosts, ports, vars, &role, &password);
        for psql in psqls() {
            let libpq = libpq_reaches(&psql, hosts, ports, vars, &role, &password);
            let at = format!("{} with PGHOST={hosts} PGPORT={} {vars:?}", psql.display(), list(ports));
            match libpq {
                Ok(port) => {
                    assert_eq!(*failing, 0, "{at}: libpq reached {port}");
                    assert_eq!(chosen(ours.assert_ok()), port, "{at}: {ours}");
                }
                Err(said) => {
                    assert_ne!(*failing, 0, "{at}: libpq failed: {said}");
                    assert_eq!(ours.code, *failing, "{at}: libpq said {said}\n{ours}");
                }
            }
        }
    }
    // libpq 16+ with PGLOADBALANCEHOSTS=random tries the list in any order: an app would
    // sometimes land on the server it cannot log in to. The check connects to each.
    let random = [("PGLOADBALANCEHOSTS", "random")];
    let v18 = support::pg::newer(18).join("psql");
    let tries: Vec<Result<u16, String>> = (0..20)
        .map(|_| libpq_reaches(&v18, "localhost,localhost", &[live, other.port], &random, &role, &password))
        .collect();
    assert!(tries.iter().any(Result::is_err) && tries.contains(&Ok(live)), "libpq 18 picks at random: {tries:?}");
    check(&home, "localhost,localhost", &[live, other.port], &[], &role, &password).assert_ok();
    check(&home, "localhost,localhost", &[live, other.port], &random, &role, &password)
        .assert_fails(77, &format!("localhost:{}", other.port));
    check(&home, "localhost,localhost", &[dead, live], &random, &role, &password).assert_ok();
    let bad = [("PGLOADBALANCEHOSTS", "sometimes")];
    let said = libpq_reaches(&v18, "localhost", &[live], &bad, &role, &password).unwrap_err();
    assert!(said.contains("invalid load_balance_hosts value: \"sometimes\""), "{said}");
    check(&home, "localhost", &[live], &bad, &role, &password)
        .assert_fails(78, "PGLOADBALANCEHOSTS: invalid load_balance_hosts value: \"sometimes\"");
    // The servers passed over are named, with libpq's reason.
    let run = check(&home, "localhost,localhost", &[dead, live], &[], &role, &password);
    let skipped = &report(&run)["skipped"];
    assert_eq!(skipped[0]["server"], format!("localhost:{dead}"), "{run}");
    assert!(skipped[0]["reason"].as_str().is_some_and(|r| r.contains("Connection refused")), "{run}");
    let run = check(&home, "localhost,localhost", &[dead, dead], &[], &role, &password);
    assert!(run.stderr.matches("Connection refused").count() >= 2, "each server's failure: {run}");
    // The launched app's libpq walks the list it is given to the same server.
    let mut cmd = launcher_as(&home, 0, &role, &password);
    cmd.env("PGHOST", "localhost,localhost").env("PGPORT", list(&[dead, live]));
    let psql = support::pg::psql();
    let run = Run::of(cmd.arg("--").arg(&psql).args(["-XAtc", "select inet_server_port()"]));
    assert_eq!(run.assert_ok().stdout.trim(), live.to_string(), "{run}");
    assert!(run.stderr.contains(&format!("passed over localhost:{dead}")), "{run}");
    // With the password in a .pgpass, the app's libpq finds a line for whichever server it
    // reaches: one per server of the list.
    let mut cmd = launcher_as(&home, 0, &role, &password);
    cmd.env("PGHOST", "localhost,localhost").env("PGPORT", list(&[dead, live]));
    let run =
        Run::of(cmd.args(["--password-via", "passfile", "--"]).arg(&psql).args(["-XAtc", "select inet_server_port()"]));
    assert_eq!(run.assert_ok().assert_no_leak(&password).stdout.trim(), live.to_string(), "{run}");
    // Lists that do not pair up are refused in libpq's words.
    for (hosts, ports, words) in [
        ("localhost,localhost", list(&[live, live, live]), "could not match 3 port numbers to 2 hosts"),
        ("localhost,localhost,localhost", list(&[live, live]), "could not match 2 port numbers to 3 hosts"),
    ] {
        let out = psql_of(&psql, 0, &role, &password, "select 1")
            .env("PGHOST", hosts)
            .env("PGPORT", &ports)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains(words), "{}", String::from_utf8_lossy(&out.stderr));
        let mut cmd = launcher_as(&home, 0, &role, &password);
        Run::of(cmd.env("PGHOST", hosts).env("PGPORT", &ports).arg("check")).assert_fails(78, words);
    }
    let mut cmd = launcher_as(&home, live, &role, &password);
    Run::of(cmd.env("PGHOST", "localhost,").arg("check")).assert_fails(78, "has an empty entry");
    let mut cmd = launcher_as(&home, live, &role, &password);
    Run::of(cmd.env("PGHOST", "localhost,localhost").args(["check", "--driver", "node-postgres"]))
        .assert_fails(78, "which node-postgres does not walk as libpq does");
    let mut cmd = launcher_as(&home, live, &role, &password);
    Run::of(cmd.env("PGHOST", "localhost,localhost").args(["check", "--driver", "pgjdbc"]))
        .assert_fails(78, "which pgjdbc does not walk as libpq does");
    let mut cmd = launcher_as(&home, live, &role, &password);
    Run::of(cmd.env("PGTARGETSESSIONATTRS", "prefer-standby").args(["check", "--driver", "rustls"]))
        .assert_fails(78, "PGTARGETSESSIONATTRS=prefer-standby: rustls apps (tokio-postgres) know only any");
}

/// A primary whose pg_hba.conf lets a standby copy it, with the role, and its hot standby.
pub fn primary_and_standby(role: &str, password: &str) -> (Pg, Pg) {
    let s = services();
    let hba = "local all all trust\nlocal replication all trust\nhostssl all all 127.0.0.0/8 scram-sha-256\n";
    let custom = support::pg::Custom { hba: Some(hba), ..Default::default() };
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let dir = s.root.join(unique("pg-ha"));
    let primary =
        Pg::start_custom(&dir.join("primary"), cert, key, true, support::free_port_pair(), None, Some(custom));
    primary.create_role(role, password);
    let standby = primary.standby(&dir.join("standby"), cert, key);
    assert_eq!(standby.sql("select pg_is_in_recovery()").trim(), "t");
    (primary, standby)
}

#[test]
fn target_session_attrs_choose_among_a_primary_and_its_standby_as_libpq_chooses() {
    let home = support::home(&unique("chk-home"));
    let role = unique("ha");
    let password = support::canary();
    let (primary, standby) = primary_and_standby(&role, &password);
    let (p, sb) = (primary.port, standby.port);
    let hosts = "localhost,localhost";
    let attrs = ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"];
    let mut reached = Vec::new();
    for order in [[p, sb], [sb, p], [p, p], [sb, sb]] {
        for value in attrs {
            let vars = [("PGTARGETSESSIONATTRS", value)];
            let ours = check(&home, hosts, &order, &vars, &role, &password);
            for psql in psqls() {
                let at = format!("{} with PGPORT={} PGTARGETSESSIONATTRS={value}", psql.display(), list(&order));
                match libpq_reaches(&psql, hosts, &order, &vars, &role, &password) {
                    Ok(port) => {
                        assert_eq!(chosen(ours.assert_ok()), port, "{at}: {ours}");
                        reached.push(port);
                    }
                    Err(said) => {
                        let words = ["session is read-only", "session is not read-only", "hot standby mode"];
                        assert!(words.iter().any(|w| said.contains(w)), "{at}: {said}");
                        ours.assert_fails(69, "PGTARGETSESSIONATTRS");
                        assert!(words.iter().any(|w| ours.stderr.contains(w)), "{at}: {ours}");
                    }
                }
            }
        }
    }
    // Both servers were chosen by some setting: the walk did not always settle on the first.
    assert!(reached.contains(&p) && reached.contains(&sb), "{reached:?}");
    // The reasons the report gives for passing over a server.
    let run = check(&home, hosts, &[sb, p], &[("PGTARGETSESSIONATTRS", "read-write")], &role, &password);
    let skipped = &report(&run)["skipped"];
    assert_eq!(skipped[0]["server"], format!("localhost:{sb}"), "{run}");
    assert_eq!(skipped[0]["reason"], "session is read-only (PGTARGETSESSIONATTRS=read-write)", "{run}");
    // The app gets the list and the setting: in PG* and in DATABASE_URL, each of which libpq
    // walks to the same server.
    let mut cmd = launcher_as(&home, 0, &role, &password);
    cmd.env("PGHOST", hosts).env("PGPORT", list(&[sb, p])).env("PGTARGETSESSIONATTRS", "primary");
    let script = r#"psql -XAtc 'select inet_server_port()' && env -u PGTARGETSESSIONATTRS psql -XAtc 'select inet_server_port()' "$DATABASE_URL""#;
    let bin = support::pg::bindir();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = Run::of(cmd.env("PATH", path).args(["--database-url", "--", "sh", "-c", script]));
    run.assert_ok().assert_no_leak(&password);
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), [p.to_string(), p.to_string()], "{run}");
}
