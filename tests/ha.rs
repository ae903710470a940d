//! High availability (issue 16). On the store's side: a store that throttles a fleet
//! restarting at once is waited for as long as it asks, with jitter, and no longer than `--wait`
//! allows. On the database's: a primary and its streaming standby behind one host list, through
//! a failover.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, Bao, Run, bao::ROOT_TOKEN, canary, launcher, services, unique};

/// A private OpenBao whose KV mount admits one request per `interval`: its quota must not slow
/// down the other tests.
fn throttled_bao(interval: &str) -> (Bao, String, String, std::path::PathBuf) {
    let s = services();
    let role = unique("throttled");
    let password = canary();
    s.pg.create_role(&role, &password);
    let bao = Bao::start(&s.root.join(&role));
    bao.put_kv2(
        "db",
        &serde_json::json!({
            "username": role, "password": password, "host": "localhost",
            "port": s.pg.port.to_string(), "dbname": "postgres",
            "ca_pem": std::fs::read_to_string(&s.certs.ca).unwrap(),
        }),
    );
    bao.api(
        "POST",
        "/v1/sys/quotas/rate-limit/launches",
        Some(&serde_json::json!({"rate": 1, "interval": interval, "path": "secret/"})),
    );
    (bao, role, password, support::home(&unique("throttled-home")))
}

fn check(bao: &Bao, home: &std::path::Path, extra: &[&str]) -> Run {
    let mut c = launcher(home);
    c.env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", ROOT_TOKEN)
        .args(["check", "--credentials", "vault:secret/db", "--ca", "vault:secret/db#ca_pem"])
        .args(extra);
    Run::of(&mut c)
}

/// The delay a retry announced, and what the store asked for.
fn announced(run: &Run) -> (Duration, Option<Duration>) {
    let number_after = |marker: &str| -> Option<u64> {
        let at = run.stderr.find(marker)? + marker.len();
        run.stderr[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let delay = number_after("retrying in ").unwrap_or_else(|| panic!("no retry announced:\n{run}"));
    (Duration::from_millis(delay), number_after("asked to retry after ").map(Duration::from_secs))
}

#[test]
fn a_throttled_request_is_retried_under_wait_and_not_before_the_store_asks() {
    let (bao, _role, password, home) = throttled_bao("3s");
    // One launch a window: the next one is throttled, which waiting cures (69, not 78).
    check(&bao, &home, &[]).assert_ok();
    check(&bao, &home, &[])
        .assert_fails(69, "vault:secret/db: Vault at ")
        .assert_fails(69, "is rate-limiting requests (HTTP 429)")
        .assert_no_leak(&password);
    // Under --wait it is retried, a second at least (the store named no time) and jittered.
    let run = check(&bao, &home, &["--wait", "20s"]);
    run.assert_ok().assert_no_leak(&password);
    let (delay, asked) = announced(&run);
    assert_eq!(asked, None, "{run}");
    assert!(delay >= Duration::from_secs(1) && delay < Duration::from_secs(2), "{run}");

    // Told when to come back (Retry-After), the launcher comes back then, not before, and
    // spreads a fleet over as long again.
    bao.api("POST", "/v1/sys/quotas/config", Some(&serde_json::json!({"enable_rate_limit_response_headers": true})));
    let run = loop {
        let run = check(&bao, &home, &["--wait", "20s"]);
        if run.stderr.contains("retrying in ") {
            break run;
        }
        run.assert_ok();
    };
    run.assert_ok().assert_no_leak(&password);
    let (delay, asked) = announced(&run);
    let asked = asked.unwrap_or_else(|| panic!("Retry-After not read:\n{run}"));
    assert!(asked >= Duration::from_secs(1) && delay >= asked && delay < asked * 2, "{run}");
}

#[test]
fn a_store_asking_for_longer_than_wait_has_left_is_not_waited_for() {
    let (bao, _role, password, home) = throttled_bao("60s");
    bao.api("POST", "/v1/sys/quotas/config", Some(&serde_json::json!({"enable_rate_limit_response_headers": true})));
    check(&bao, &home, &[]).assert_ok();
    let started = Instant::now();
    let run = check(&bao, &home, &["--wait", "5s"]);
    run.assert_fails(75, "--wait has left")
        .assert_fails(75, "is rate-limiting requests (HTTP 429, asked to retry after ")
        .assert_no_leak(&password);
    assert!(started.elapsed() < Duration::from_secs(4), "waited in vain: {run}");
}

#[test]
fn a_launch_under_wait_follows_a_failover_to_the_promoted_standby() {
    let home = support::home(&unique("failover-home"));
    let role = unique("failover");
    let password = canary();
    let (mut primary, standby) = crate::check::hosts::primary_and_standby(&role, &password);
    let ports = format!("{},{}", primary.port, standby.port);
    let launch = |wait: &str| {
        let mut cmd = crate::check::launcher_as(&home, 0, &role, &password);
        cmd.env("PGHOST", "localhost,localhost")
            .env("PGPORT", &ports)
            .env("PGTARGETSESSIONATTRS", "read-write")
            .args(["--wait", wait, "--", &support::pg::psql().display().to_string()])
            .args(["-XAtc", "select inet_server_port(), pg_is_in_recovery()"]);
        cmd
    };
    // Before: the check and the app reach the primary, past nothing.
    let run = Run::of(&mut launch("5s"));
    assert_eq!(run.assert_ok().assert_no_leak(&password).stdout.trim(), format!("{}|f", primary.port), "{run}");
    // The primary is gone and the standby not yet promoted: read-only, so passed over, and
    // --wait rides it out until the promotion.
    primary.stop();
    let started = Instant::now();
    let child = launch("30s").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    standby.promote();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), format!("{}|f", standby.port), "the app reached the new primary: {stderr}");
    assert!(stderr.contains("session is read-only"), "the standby was passed over before: {stderr}");
    assert!(stderr.contains("retrying in "), "it waited: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(25), "{stderr}");
    assert!(stderr.contains(&format!("passed over localhost:{}", primary.port)), "{stderr}");
}

#[test]
fn a_launch_during_a_failover_that_does_not_end_gives_up_with_75_when_wait_runs_out() {
    let home = support::home(&unique("failover-home"));
    let role = unique("failover");
    let password = canary();
    let (mut primary, standby) = crate::check::hosts::primary_and_standby(&role, &password);
    let ports = format!("{},{}", primary.port, standby.port);
    primary.stop();
    let mut cmd = crate::check::launcher_as(&home, 0, &role, &password);
    cmd.env("PGHOST", "localhost,localhost")
        .env("PGPORT", &ports)
        .env("PGTARGETSESSIONATTRS", "read-write")
        .args(["--wait", "2s", "--", "true"]);
    let started = Instant::now();
    let run = Run::of(&mut cmd);
    run.assert_fails(75, "still unavailable after waiting 2s").assert_no_leak(&password);
    assert!(run.stderr.contains("session is read-only"), "{run}");
    assert!(started.elapsed() < Duration::from_secs(15), "{run}");
    // Without --wait, the same is a plain 69 at once.
    let mut once = crate::check::launcher_as(&home, 0, &role, &password);
    once.env("PGHOST", "localhost,localhost")
        .env("PGPORT", &ports)
        .env("PGTARGETSESSIONATTRS", "read-write")
        .args(["--", "true"]);
    Run::of(&mut once).assert_fails(69, "session is read-only");
}
