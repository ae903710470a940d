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

/// The launcher as `role`, to the writable server of a primary and its standby on `ports`.
fn to_the_writable_one(home: &std::path::Path, role: &str, password: &str, ports: &str) -> std::process::Command {
    let mut cmd = crate::check::launcher_as(home, 0, role, password);
    cmd.env("PGHOST", "localhost,localhost").env("PGPORT", ports).env("PGTARGETSESSIONATTRS", "read-write");
    cmd
}

#[test]
fn a_launch_under_wait_follows_a_failover_to_the_promoted_standby() {
    let home = support::home(&unique("failover-home"));
    let role = unique("failover");
    let password = canary();
    let (mut primary, standby) = crate::check::hosts::primary_and_standby(&role, &password);
    let ports = format!("{},{}", primary.port, standby.port);
    let launch = |wait: &str| {
        let mut cmd = to_the_writable_one(&home, &role, &password, &ports);
        cmd.args(["--wait", wait, "--", &support::pg::psql().display().to_string()])
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
    let mut cmd = to_the_writable_one(&home, &role, &password, &ports);
    cmd.args(["--wait", "2s", "--", "true"]);
    let started = Instant::now();
    let run = Run::of(&mut cmd);
    run.assert_fails(75, "still unavailable after waiting 2s").assert_no_leak(&password);
    assert!(run.stderr.contains("session is read-only"), "{run}");
    assert!(started.elapsed() < Duration::from_secs(15), "{run}");
    // Without --wait, the same is a plain 69 at once.
    let mut once = to_the_writable_one(&home, &role, &password, &ports);
    once.args(["--", "true"]);
    Run::of(&mut once).assert_fails(69, "session is read-only");
}

/// A raft cluster with what the launches need: KV v2 at `secret/` holding `db` (the shared
/// server's role and CA), the database engine at `database/` with a role `storm` on the shared
/// server, and AppRole (`launcher`, whose tokens read both); plus a home holding the role id
/// and a secret id (unlimited uses) in files.
struct Raft {
    cluster: support::bao::BaoCluster,
    home: std::path::PathBuf,
    role_id: std::path::PathBuf,
    secret_id: std::path::PathBuf,
    password: String,
}

fn raft() -> Raft {
    let s = services();
    let name = unique("raft");
    let cluster = support::bao::BaoCluster::start(&s.root.join(&name));
    let active = cluster.active();
    active.api("POST", "/v1/sys/mounts/secret", Some(&serde_json::json!({"type": "kv", "options": {"version": "2"}})));
    active.wait_kv2_ready("secret", "");
    let password = canary();
    s.pg.create_role(&name, &password);
    active.put_kv2(
        "db",
        &serde_json::json!({
            "username": name, "password": password, "host": "localhost",
            "port": s.pg.port.to_string(), "dbname": "postgres",
            "ca_pem": std::fs::read_to_string(&s.certs.ca).unwrap(),
        }),
    );
    active.api("POST", "/v1/sys/mounts/database", Some(&serde_json::json!({"type": "database"})));
    crate::dynamic::database_connection(active, "pg", &unique("raftadmin"), &serde_json::json!({"allowed_roles": "*"}));
    let create = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';";
    active.api(
        "POST",
        "/v1/database/roles/storm",
        Some(&serde_json::json!({"db_name": "pg", "creation_statements": [create], "default_ttl": "1h", "max_ttl": "2h"})),
    );
    let policy = "path \"secret/data/*\" { capabilities = [\"read\"] }\n\
                  path \"database/creds/*\" { capabilities = [\"read\"] }\n";
    active.api("PUT", "/v1/sys/policies/acl/launcher", Some(&serde_json::json!({"policy": policy})));
    active.api("POST", "/v1/sys/auth/approle", Some(&serde_json::json!({"type": "approle"})));
    active.api(
        "POST",
        "/v1/auth/approle/role/launcher",
        Some(&serde_json::json!({"token_policies": ["launcher"], "token_ttl": "10m"})),
    );
    let role_id = active.api("GET", "/v1/auth/approle/role/launcher/role-id", None)["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = active.api("POST", "/v1/auth/approle/role/launcher/secret-id", None)["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let home = support::home(&unique("raft-home"));
    let role_id = crate::auth::secret_file(&home, "role-id", &role_id);
    let secret_id = crate::auth::secret_file(&home, "secret-id", &secret_id);
    cluster.settle();
    Raft { cluster, home, role_id, secret_id, password }
}

impl Raft {
    /// A launch against `node` logging in with AppRole, reading `credentials`.
    fn launch(&self, node: &Bao, credentials: &[&str]) -> std::process::Command {
        let mut c = launcher(&self.home);
        c.env("VAULT_ADDR", &node.addr)
            .args(["--vault-auth", "approle", "--vault-role-id-file"])
            .arg(&self.role_id)
            .arg("--vault-secret-id-file")
            .arg(&self.secret_id)
            .args(credentials);
        c
    }

    /// The tokens the cluster holds, the root token aside.
    fn login_tokens(&self) -> usize {
        let listed = self.cluster.active().api("LIST", "/v1/auth/token/accessors", None);
        listed["data"]["keys"].as_array().map_or(0, Vec::len) - 1
    }
}

#[test]
fn a_launch_pointed_at_a_raft_standby_is_answered_through_it_and_leaves_no_token() {
    let raft = raft();
    let (_, standby) = raft.cluster.standby();
    assert_eq!(standby.request("GET", "/v1/sys/health", None, None).map(|(s, _)| s), Some(429), "a standby");
    let kv = ["--credentials", "vault:secret/db", "--ca", "vault:secret/db#ca_pem"];
    let psql = support::pg::psql().display().to_string();
    let run = Run::of(raft.launch(standby, &kv).args(["--", &psql, "-XAtc", "select current_user"]));
    run.assert_ok().assert_no_leak(&raft.password);
    assert!(run.stdout.trim().starts_with("raft"), "{run}");
    // The standby forwarded the login and the read to the active node, which answered (and
    // audited) them; the login token was revoked before the exec.
    assert!(raft.cluster.active().audited_reads("secret/data/db") >= 1, "{run}");
    assert_eq!(raft.login_tokens(), 0, "{run}");
}

/// What separates one launch's log from the next in the storm's.
const LAUNCH_END: &str = "\n=====\n";

/// Launches in the storm: 40 here, `$LAUNCHER_STORM` when bench/failover runs it (200, against
/// the release binary, for the time-to-exec percentiles in BENCHMARKS.md).
fn storm_size() -> usize {
    std::env::var("LAUNCHER_STORM").ok().and_then(|n| n.parse().ok()).unwrap_or(40)
}

#[test]
fn a_storm_of_launches_rides_out_the_raft_leader_being_killed_and_leaves_nothing_behind() {
    let mut raft = raft();
    let leader = raft.cluster.leader();
    let (target, _) = raft.cluster.standby();
    let node = raft.cluster.nodes[target].as_ref().unwrap();
    let dynamic = [
        "--credentials",
        "vault:database/creds/storm",
        "--ca",
        "vault:secret/db#ca_pem",
        "--host",
        "localhost",
        "--port",
        &services().pg.port.to_string(),
        "--dbname",
        "postgres",
        "--wait",
        "60s",
        "--",
        "sh",
        "-c",
        "date +%s%N",
    ];
    let storm = storm_size();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    // Each launch with the moment it was spawned: the app prints the moment it started.
    let spawn =
        |cmd: &mut std::process::Command| (now(), cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap());
    let mut children: Vec<_> = (0..storm / 2).map(|_| spawn(&mut raft.launch(node, &dynamic))).collect();
    std::thread::sleep(Duration::from_millis(300));
    let second: Vec<std::process::Command> = (0..storm - storm / 2).map(|_| raft.launch(node, &dynamic)).collect();
    raft.cluster.kill(leader);
    children.extend(second.into_iter().map(|mut c| spawn(&mut c)));
    let mut retried = 0;
    let mut logs = String::new();
    let mut to_exec = Vec::new();
    for (spawned, child) in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        logs.push_str(&stderr);
        logs.push_str(LAUNCH_END);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        retried += usize::from(stderr.contains("retrying in "));
        let started: u128 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the app's start time");
        let nanos = u64::try_from(started.saturating_sub(spawned)).unwrap_or(u64::MAX);
        to_exec.push(Duration::from_nanos(nanos).as_secs_f64() * 1000.0);
    }
    assert!(retried > 0, "no launch met the election");
    assert_ne!(raft.cluster.leader(), leader, "a new leader");
    let (unheard, zombies) = nothing_left_behind(&raft, &logs, storm);
    to_exec.sort_by(f64::total_cmp);
    let pick = |percent: usize| to_exec[(to_exec.len() * percent / 100).min(to_exec.len() - 1)];
    // Read by bench/failover; not a timed assertion.
    eprintln!(
        "STORM_RESULT {}",
        serde_json::json!({"launched": storm, "succeeded": to_exec.len(), "retried": retried,
            "p50_ms": pick(50), "p99_ms": pick(99), "max_ms": pick(100),
            "unheard": unheard, "zombies": zombies})
    );
}

/// What each launch kept: the token and the lease of its last attempt (the app's credentials
/// hang on them). Every other token or lease a launcher was told of, it revoked; what is left
/// beyond is what the dying leader issued without its answer ever reaching a launcher. Returns
/// how many of those (tokens and leases), and how many tokens the store refused to revoke.
fn nothing_left_behind(raft: &Raft, logs: &str, storm: usize) -> (usize, usize) {
    let logged = |marker: &str| -> Vec<Vec<String>> {
        logs.split(LAUNCH_END)
            .map(|one| {
                one.lines()
                    .filter_map(|l| l.split_once(marker))
                    .map(|(_, rest)| rest.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or("").to_owned())
                    .collect()
            })
            .filter(|ids: &Vec<String>| !ids.is_empty())
            .collect()
    };
    let (tokens, leases) = (logged("token accessor "), logged("lease database/creds/storm/"));
    let active = raft.cluster.active();
    let list = |path: &str| -> Vec<String> {
        let (_, text) = active.request("LIST", path, Some(&active.token), None).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["data"]["keys"]
            .as_array()
            .map(|k| k.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    // Whether it still works: a token whose revocation a crash cut short stays listed, but
    // its accessor no longer looks it up.
    let valid = |what: &str, id: &str| {
        let (path, body) = if what == "token" {
            ("/v1/auth/token/lookup-accessor", serde_json::json!({ "accessor": id }))
        } else {
            ("/v1/sys/leases/lookup", serde_json::json!({ "lease_id": format!("database/creds/storm/{id}") }))
        };
        active.request("POST", path, Some(&active.token), Some(&body)).is_some_and(|(status, _)| status == 200)
    };
    // A token whose login the dying leader answered but whose lease it did not keep: the new
    // leader still lists it, and refuses it (403) to anyone, its own revocation included. The
    // launch says so; the store's tidy removes it.
    let refused = |what: &str, id: &str| {
        what == "token"
            && logs.split(LAUNCH_END).any(|one| {
                one.contains(id)
                    && one.contains(
                        "could not revoke the Vault login token: vault:auth/token/revoke-self: permission denied",
                    )
            })
    };
    // Revoking a token revokes its leases in the background: give that a moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut not_ours = (0, 0);
    let mut left = (list("/v1/auth/token/accessors"), list("/v1/sys/leases/lookup/database/creds/storm/"));
    for (what, issued, held) in [("token", &tokens, &mut left.0), ("lease", &leases, &mut left.1)] {
        let kept: Vec<&String> = issued.iter().filter_map(|ids| ids.last()).collect();
        assert_eq!(kept.len(), storm, "each launch's {what}");
        loop {
            let stale: Vec<&String> = issued
                .iter()
                .flat_map(|ids| &ids[..ids.len() - 1])
                .filter(|id| held.contains(id) && valid(what, id) && !refused(what, id))
                .collect();
            if stale.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{what}s a launcher was issued and did not revoke: {stale:?}");
            std::thread::sleep(Duration::from_millis(500));
            *held = list(if what == "token" {
                "/v1/auth/token/accessors"
            } else {
                "/v1/sys/leases/lookup/database/creds/storm/"
            });
        }
        assert!(kept.iter().all(|id| valid(what, id)), "each launch's {what} is still valid");
        let unheard = held.iter().filter(|id| !issued.iter().flatten().any(|i| i == *id) && valid(what, id)).count()
            - usize::from(what == "token");
        let zombies = issued.iter().flat_map(|ids| &ids[..ids.len() - 1]).filter(|id| refused(what, id)).count();
        eprintln!(
            "{what}s issued that no launcher heard of (answers lost with the leader): {unheard}; listed but refused \
             by the store: {zombies}"
        );
        not_ours.0 += unheard;
        not_ours.1 += zombies;
    }
    not_ours
}
