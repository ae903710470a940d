//! Issue 13, item 3: a signal during an attempt revokes what the launch was issued, counted in
//! OpenBao's leases and tokens and in pg_roles.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::launch_with;
use crate::auth::{accessor_of, lease_alive, new_secret_id, secret_file, setup, token_alive};
use crate::support::{self, Fixture, Run, bao::ROOT_TOKEN, launcher, services, unique};

/// The `database/` engine's connection `pgsig`, whose users are named `sig-…`, and its role
/// `sig`: what a signalled launch was issued can be counted in pg_roles.
fn signal_engine() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| crate::dynamic::role_of_its_own("pgsig", "sigadmin", "sig", "1h", "2h"));
}

fn sig_users() -> usize {
    services().pg.sql("select count(*) from pg_roles where rolname like 'sig-%'").trim().parse().unwrap()
}

/// Runs `cmd` (dynamic credentials from role `sig`, the database a listener that accepts and
/// never answers), sends `signal` once the check is connecting, and returns the run and how
/// long the launcher took after the signal.
fn signalled(cmd: &mut Command, signal: &str) -> (Run, Duration) {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port().to_string();
    cmd.args(["--credentials", "vault:database/creds/sig", "--host", "localhost", "--port", &port])
        .args(["--dbname", "postgres", "--", "true"]);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The check dials only after the credentials were issued.
    hole.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        match hole.accept() {
            Ok((held, _)) => break held,
            Err(_) if Instant::now() < deadline && child.try_wait().unwrap().is_none() => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("the launcher never dialled ({e}): {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    };
    assert_eq!(sig_users(), 1, "the launch holds a database user when the signal comes");
    let sent = Instant::now();
    support::run_ok(Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()));
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    drop(held);
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, took)
}

/// Item 3: A signal during an attempt (Kubernetes deleting a pod in `--wait`, Ctrl-C) revokes what
/// the launch was issued, within about two seconds, and exits 128 + the signal.
#[test]
fn a_signal_mid_launch_revokes_what_it_was_issued() {
    signal_engine();
    let s = services();
    let home = support::home(&unique("sig"));
    // A token the launcher was given: it revokes the lease, not the token.
    let mut cmd = launcher(&home);
    cmd.env("VAULT_ADDR", &s.bao.addr).env("VAULT_TOKEN", ROOT_TOKEN).args(["--wait", "60s"]);
    cmd.args(["--ca", &format!("file:{}", s.certs.ca.display())]);
    let (run, took) = signalled(&mut cmd, "TERM");
    assert_eq!(run.code, 143, "{run}");
    assert!(run.stderr.contains("stopped by SIGTERM before the app started"), "{run}");
    assert!(took < Duration::from_secs(3), "revoked within the grace: {took:?}\n{run}");
    let lease = run.stderr.split("lease ").nth(1).and_then(|l| l.split(':').next()).unwrap_or_else(|| panic!("{run}"));
    assert!(!lease_alive(lease), "the lease must be gone: {run}");
    assert_eq!(sig_users(), 0, "the database user must be gone: {run}");

    // An AppRole login: its token goes, and the lease and the user with it.
    let auth = setup();
    let secret_id = new_secret_id(false);
    let role_id = secret_file(&home, "role-id", &auth.role_id);
    let secret = secret_file(&home, &unique("secret-id"), &secret_id);
    let mut cmd = launcher(&home);
    cmd.env("VAULT_ADDR", &s.bao.addr).args(["--vault-auth", "approle", "--vault-role-id-file"]);
    cmd.arg(role_id).arg("--vault-secret-id-file").arg(secret);
    cmd.args(["--ca", &format!("file:{}", s.certs.ca.display())]);
    let (run, took) = signalled(&mut cmd, "INT");
    assert_eq!(run.code, 130, "{run}");
    assert!(took < Duration::from_secs(3), "{took:?}\n{run}");
    run.assert_no_leak(&secret_id);
    assert!(!token_alive(&accessor_of(&run)), "the login token must be gone: {run}");
    let lease = run.stderr.split("lease ").nth(1).and_then(|l| l.split(':').next()).unwrap_or_else(|| panic!("{run}"));
    assert!(!lease_alive(lease), "{run}");
    assert_eq!(sig_users(), 0, "{run}");

    // Between attempts nothing is held: SIGHUP during the back-off ends the launch at once.
    let closed = support::free_port_pair().to_string();
    let mut cmd = launch_with(&home, &[], &Fixture::new().credentials());
    let mut child = cmd
        .args(["--port", &closed, "--wait", "60s", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("retrying in") && stderr.read(&mut byte).unwrap() == 1 {
        seen.push(byte[0]);
    }
    let pid = child.id();
    support::run_ok(Command::new("kill").arg("-HUP").arg(pid.to_string()));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(129), "{rest}");
    assert!(rest.contains("stopped by SIGHUP"), "{rest}");
}
