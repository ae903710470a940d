//! Issue 18: `--supervise`. The app runs as the launcher's child: signals reach it, its status
//! is the launcher's, orphans are reaped; leases and tokens are renewed, and a change of
//! credentials (a lease at its max TTL, a new KV version, a rotated password) is fetched,
//! checked and applied while the real PostgreSQL and OpenBao serve.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::drivers::{asyncpg_app, node_app, pgjdbc_app, pgx_app};
use crate::support::{self, Fixture, bao::ROOT_TOKEN, canary, launcher, services, unique};

/// A shell script `name` in `home` running `body` (psql is `$PSQL`).
fn script(home: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = home.join(name);
    let psql = support::pg::psql();
    std::fs::write(&path, format!("#!/bin/sh\nPSQL={}\n{body}\n", psql.display())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// An app that opens a fresh connection every `pause` and logs, one line each, its own PID,
/// `ok` and the user it connected as, or `fail`. A refused connection is tried once more
/// after 0.7 s (`retried`), as a pool does.
fn connecting_app(home: &Path, log: &Path, pause: &str) -> PathBuf {
    script(
        home,
        "app.sh",
        &format!(
            "connect() {{ $PSQL -XAtqc 'select current_user' 2>/dev/null; }}\n\
             while :; do\n\
             if u=$(connect); then echo \"$$ ok $u\" >> {log}\n\
             else outcome=fail; for _ in 1 2 3; do sleep 1; if u=$(connect); then outcome=retried; break; fi; done\n\
             echo \"$$ $outcome $u\" >> {log}; fi\n\
             sleep {pause}\ndone",
            log = log.display()
        ),
    )
}

/// The log's lines as (app PID, outcome, user).
fn connections(log: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.split(' ').map(str::to_owned);
            (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default())
        })
        .collect()
}

fn distinct<T: Ord + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort();
    v.dedup();
    v
}

/// `launcher --supervise` with `vault:PATH` from the store at `vault_addr` (root token) as the
/// credentials, for the test server, and `extra` options; the app follows.
fn database_launch(home: &Path, vault_addr: &str, path: &str, extra: &[&str]) -> Command {
    let s = services();
    let mut cmd = launcher(home);
    cmd.env("VAULT_ADDR", vault_addr).env("VAULT_TOKEN", ROOT_TOKEN).arg("--supervise").args(extra).args([
        "--credentials",
        &format!("vault:{path}"),
        "--ca",
        &format!("file:{}", s.certs.ca.display()),
        "--host",
        "localhost",
        "--port",
        &s.pg.port.to_string(),
        "--dbname",
        "postgres",
        "--",
    ]);
    cmd
}

/// Sends `signal` to `child` (the launcher) and returns its exit code and stderr.
fn stop(child: Child, signal: &str) -> (i32, String) {
    support::run_ok(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]));
    finish(child, &format!("after SIG{signal}"))
}

/// Waits (30 s at most: a launcher that does not exit fails the test instead of hanging it,
/// and is killed) for `child` to exit; its exit code and stderr.
fn finish(mut child: Child, when: &str) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the launcher did not exit {when}:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The `database/` engine's connection `pgsup` (users `sup-…`) and role `sup`: 3 s leases, at
/// most 8 s.
fn supervised_engine() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| crate::dynamic::role_of_its_own("pgsup", "supadmin", "sup", "3s", "8s"));
}

#[test]
fn dynamic_credentials_outlive_their_max_ttl_under_two_or_more_users_and_nothing_is_left() {
    supervised_engine();
    let s = services();
    let home = support::home(&unique("sup-dyn"));
    let log = home.join("connections.log");
    let app = connecting_app(&home, &log, "1");
    let mut cmd = database_launch(&home, &s.bao.addr, "database/creds/sup", &[]);
    let child = cmd.arg(&app).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(20));
    let (code, stderr) = stop(child, "TERM");
    // The app (sh) was ended by the SIGTERM forwarded to it: 128 + 15, as a shell reports it.
    assert_eq!(code, 143, "{stderr}");
    let seen = connections(&log);
    assert!(seen.len() >= 15, "a connection a second for 20 s: {seen:?}\n{stderr}");
    assert!(seen.iter().all(|(_, outcome, _)| outcome == "ok"), "every connection succeeds: {seen:?}\n{stderr}");
    let users = distinct(seen.iter().map(|c| c.2.clone()));
    let pids = distinct(seen.iter().map(|c| c.0.clone()));
    assert!(users.len() >= 2, "two successive database users at least: {users:?}\n{stderr}");
    assert!(users.iter().all(|u| u.starts_with("sup-")), "{users:?}");
    assert!(pids.len() >= users.len(), "a new app per change: {pids:?} for {users:?}\n{stderr}");
    assert!(stderr.contains("reaches its max TTL"), "{stderr}");
    assert!(stderr.contains("renewed lease database/creds/sup/"), "{stderr}");
    // Every lease revoked (the last at exit), and with them the users.
    let listed = s.bao.request("LIST", "/v1/sys/leases/lookup/database/creds/sup/", Some(ROOT_TOKEN), None);
    let leases: Vec<String> = listed
        .and_then(|(_, text)| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["data"]["keys"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    assert!(leases.is_empty(), "leases left: {leases:?}\n{stderr}");
    let roles = s.pg.sql("select count(*) from pg_roles where rolname like 'sup-%'");
    assert_eq!(roles.trim(), "0", "database users left\n{stderr}");
}

#[test]
fn renewals_that_fail_while_the_store_is_down_are_retried_and_the_app_runs_on() {
    let s = services();
    let mut bao = support::Bao::start(&s.root.join(unique("sup-down")));
    bao.api("POST", "/v1/sys/mounts/database", Some(&serde_json::json!({"type": "database"})));
    crate::dynamic::database_connection(&bao, "pg", &unique("downadmin"), &serde_json::json!({"allowed_roles": "*"}));
    let create = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';";
    bao.api(
        "POST",
        "/v1/database/roles/down",
        Some(&serde_json::json!({"db_name": "pg", "creation_statements": [create], "default_ttl": "3s", "max_ttl": "1h"})),
    );
    let home = support::home(&unique("sup-down"));
    let app = script(&home, "app.sh", "echo $$\nwhile :; do sleep 0.1; done");
    let mut cmd = database_launch(&home, &bao.addr, "database/creds/down", &[]);
    let mut child = cmd.arg(&app).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let app_pid: u32 = line.trim().parse().unwrap();
    // A renewal goes through, then the store goes away for good.
    std::thread::sleep(Duration::from_millis(2500));
    bao.kill();
    std::thread::sleep(Duration::from_secs(6));
    assert!(child.try_wait().unwrap().is_none(), "the launcher is still there");
    assert!(Path::new(&format!("/proc/{app_pid}")).exists(), "the app runs on");
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 143, "{stderr}");
    assert!(stderr.contains("renewed lease database/creds/down/"), "{stderr}");
    let retries = stderr.matches("trying again in").count();
    assert!(retries >= 2, "renewals retried with back-off: {stderr}");
    assert_eq!(stderr.matches("started ").count(), 1, "the app was not restarted: {stderr}");
}

#[test]
fn a_login_token_at_its_max_ttl_is_replaced_by_a_new_login_and_the_app_runs_on() {
    let f = Fixture::new();
    crate::auth::setup();
    let bao = &services().bao;
    bao.api(
        "POST",
        "/v1/auth/approle/role/short",
        Some(&serde_json::json!({"token_policies": ["launcher-read"], "token_ttl": "3s", "token_max_ttl": "5s"})),
    );
    let role_id =
        bao.api("GET", "/v1/auth/approle/role/short/role-id", None)["data"]["role_id"].as_str().unwrap().to_owned();
    let secret_id = bao.api("POST", "/v1/auth/approle/role/short/secret-id", None)["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let app = announcing(&f.home, "while :; do sleep 0.1; done");
    let mut child = launcher(&f.home)
        .env("VAULT_ADDR", &bao.addr)
        .args(["--supervise", "--vault-auth", "approle", "--vault-role-id-file"])
        .arg(crate::auth::secret_file(&f.home, "role-id", &role_id))
        .arg("--vault-secret-id-file")
        .arg(crate::auth::secret_file(&f.home, "secret-id", &secret_id))
        .args(["--credentials", &f.credentials(), "--ca", &f.ca(), "--"])
        .arg(&app)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    std::thread::sleep(Duration::from_secs(12));
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 143, "{stderr}");
    assert!(stderr.contains("the Vault token reaches its max TTL"), "{stderr}");
    assert!(stderr.contains("the secrets are unchanged: the app runs on"), "{stderr}");
    assert_eq!(stderr.matches("started ").count(), 1, "the app was not restarted: {stderr}");
    // Every token a login made was revoked: the replaced ones at once, the last at exit.
    let accessors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split_once("token accessor ")?.1.split(|c: char| !c.is_ascii_alphanumeric()).next())
        .collect();
    assert!(accessors.len() >= 3, "logged in again at least twice: {stderr}");
    let alive: Vec<&&str> = accessors.iter().filter(|a| crate::auth::token_alive(a)).collect();
    assert!(alive.is_empty(), "tokens left: {alive:?}\n{stderr}");
}

/// A KV-backed launch under `--supervise`, reading again every second, with `extra` options.
fn kv_supervised(f: &Fixture, app: &Path, extra: &[&str]) -> Child {
    f.launcher()
        .args(["--supervise", "--refresh", "1s"])
        .args(extra)
        .arg("--")
        .arg(app)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the log has a line by `user`.
fn wait_for_user(log: &Path, user: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !connections(log).iter().any(|c| c.2 == user) {
        assert!(child.try_wait().unwrap().is_none(), "the launcher exited");
        assert!(Instant::now() < deadline, "no connection as {user}: {:?}", connections(log));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_new_kv_version_restarts_the_app_with_it() {
    let f = Fixture::new();
    let s = services();
    let log = f.home.join("connections.log");
    let app = connecting_app(&f.home, &log, "0.3");
    let mut child = kv_supervised(&f, &app, &[]);
    wait_for_user(&log, &f.role, &mut child);
    // A new version naming another user.
    let (role, password) = (unique("app"), canary());
    s.pg.create_role(&role, &password);
    s.bao.put_kv2(
        &f.kv_path,
        &serde_json::json!({
            "username": role, "password": password, "host": "localhost",
            "port": s.pg.port.to_string(), "dbname": "postgres",
            "ca_pem": std::fs::read_to_string(&s.certs.ca).unwrap(),
        }),
    );
    wait_for_user(&log, &role, &mut child);
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 143, "{stderr}");
    assert!(!stderr.contains(&password) && !stderr.contains(&f.password), "{stderr}");
    let seen = connections(&log);
    assert!(seen.iter().all(|c| c.1 == "ok"), "{seen:?}\n{stderr}");
    let before: Vec<_> = seen.iter().filter(|c| c.2 == f.role).map(|c| &c.0).collect();
    let after: Vec<_> = seen.iter().filter(|c| c.2 == role).map(|c| &c.0).collect();
    assert!(before.iter().all(|p| !after.contains(p)), "restarted: a new PID\n{seen:?}");
    assert!(stderr.contains("the secrets changed"), "{stderr}");
}

#[test]
fn a_rotated_password_is_written_into_the_passfile_and_the_app_runs_on() {
    let f = Fixture::new();
    let s = services();
    let log = f.home.join("connections.log");
    let app = connecting_app(&f.home, &log, "0.3");
    let mut child = kv_supervised(&f, &app, &["--password-via", "passfile", "--on-change", "passfile"]);
    wait_for_user(&log, &f.role, &mut child);
    let first = connections(&log).len();
    // The password rotated: the store first, then the database (a change that fails its check
    // is not applied, and is tried again).
    let password = canary();
    s.bao.put_kv2(
        &f.kv_path,
        &serde_json::json!({
            "username": f.role, "password": password, "host": "localhost",
            "port": s.pg.port.to_string(), "dbname": "postgres",
            "ca_pem": std::fs::read_to_string(&s.certs.ca).unwrap(),
        }),
    );
    std::thread::sleep(Duration::from_millis(1500));
    s.pg.sql(&format!("ALTER ROLE \"{}\" PASSWORD '{}'", f.role, password.replace('\'', "''")));
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections(&log).len() < first + 20 {
        assert!(Instant::now() < deadline, "{:?}", connections(&log));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 143, "{stderr}");
    assert!(!stderr.contains(&password) && !stderr.contains(&f.password), "{stderr}");
    let seen = connections(&log);
    assert_eq!(distinct(seen.iter().map(|c| c.0.clone())).len(), 1, "the same app throughout: {seen:?}");
    assert!(stderr.contains("written in place"), "{stderr}");
    // The last connections use the new password from the rewritten .pgpass.
    assert!(seen.iter().rev().take(5).all(|c| c.1 == "ok"), "{seen:?}\n{stderr}");
}

#[test]
fn a_static_role_rotating_every_5s_is_followed_in_the_passfile_by_the_same_app() {
    crate::dynamic::database_engine();
    let s = services();
    let (user, role) = (unique("rot"), unique("rot"));
    s.pg.create_role(&user, &canary());
    s.bao.api(
        "POST",
        &format!("/v1/database/static-roles/{role}"),
        Some(&serde_json::json!({"db_name": "pg", "username": user, "rotation_period": "5s"})),
    );
    let home = support::home(&unique("sup-rot"));
    let log = home.join("connections.log");
    let app = connecting_app(&home, &log, "0.3");
    let passfile = ["--password-via", "passfile", "--on-change", "passfile"];
    let mut cmd = database_launch(&home, &s.bao.addr, &format!("database/static-creds/{role}"), &passfile);
    let child = cmd.arg(&app).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(20));
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 143, "{stderr}");
    let seen = connections(&log);
    assert!(seen.len() >= 30, "{seen:?}\n{stderr}");
    assert_eq!(distinct(seen.iter().map(|c| c.0.clone())).len(), 1, "the same app throughout: {seen:?}");
    assert!(seen.iter().all(|c| c.1 != "fail" && c.2 == user), "every connection succeeds: {seen:?}\n{stderr}");
    let rotations = stderr.matches("written in place").count();
    assert!(rotations >= 2, "two rotations followed at least: {rotations}\n{stderr}");
    let retried = seen.iter().filter(|c| c.1 == "retried").count();
    eprintln!("static role: {} connections over {rotations} rotations, {retried} needed the retry", seen.len());
}

#[test]
fn a_new_aws_secret_version_restarts_the_app_with_it() {
    let s = services();
    let (role, _, name) = crate::aws::rds_secret(&serde_json::json!(s.pg.port));
    let ca = crate::aws::ca_secret();
    let home = support::home(&unique("sup-aws"));
    let log = home.join("connections.log");
    let app = connecting_app(&home, &log, "0.3");
    let mut child = crate::aws::aws_launcher(&unique("sup-aws"), "dummy-secret-key")
        .args(["--supervise", "--refresh", "1s", "--credentials", &format!("aws-sm:{name}")])
        .args(["--ca", &format!("aws-sm:{ca}"), "--"])
        .arg(&app)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_user(&log, &role, &mut child);
    // A new AWSCURRENT version naming another user.
    let (next, password) = (unique("rds"), canary());
    s.pg.create_role(&next, &password);
    let value = serde_json::json!({"engine": "postgres", "host": "localhost", "username": next,
        "password": password, "dbname": "postgres", "port": s.pg.port});
    s.moto.put_string(&name, &value.to_string());
    wait_for_user(&log, &next, &mut child);
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 143, "{stderr}");
    assert!(!stderr.contains(&password), "{stderr}");
    let seen = connections(&log);
    assert!(seen.iter().all(|c| c.1 == "ok"), "{seen:?}\n{stderr}");
    assert!(stderr.contains("the secrets changed"), "{stderr}");
}

/// Writes a new version of `f`'s secret with a new password for the same user, and sets it in
/// the database.
fn rotate(f: &Fixture) -> String {
    rotate_to(f, canary())
}

/// [`rotate`] to `password`.
fn rotate_to(f: &Fixture, password: String) -> String {
    let s = services();
    s.pg.sql(&format!("ALTER ROLE \"{}\" PASSWORD '{}'", f.role, password.replace('\'', "''")));
    s.bao.put_kv2(
        &f.kv_path,
        &serde_json::json!({
            "username": f.role, "password": password, "host": "localhost",
            "port": s.pg.port.to_string(), "dbname": "postgres",
            "ca_pem": std::fs::read_to_string(&s.certs.ca).unwrap(),
        }),
    );
    password
}

#[test]
fn on_change_exit_stops_the_app_and_exits_75() {
    let f = Fixture::new();
    let marker = f.home.join("app-stopped");
    let app =
        announcing(&f.home, &format!("trap 'touch {}; exit 0' TERM\nwhile :; do sleep 0.1; done", marker.display()));
    let mut child = f
        .launcher()
        .args(["--supervise", "--refresh", "1s", "--on-change", "exit", "--"])
        .arg(&app)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let password = rotate(&f);
    let (code, stderr) = finish(child, "once the credentials changed");
    assert_eq!(code, 75, "{stderr}");
    assert!(marker.exists(), "the app was sent SIGTERM\n{stderr}");
    assert!(!stderr.contains(&password), "{stderr}");
}

#[test]
fn on_change_signal_rewrites_the_files_and_signals_the_same_app() {
    let f = Fixture::new();
    let log = f.home.join("signals.log");
    // On SIGUSR1 the app connects with what its files now say.
    let app = announcing(
        &f.home,
        &format!(
            "trap 'echo \"$$ $($PSQL -XAtqc \"select 1\" 2>/dev/null || echo fail)\" >> {}' USR1\n\
             while :; do sleep 0.1; done",
            log.display()
        ),
    );
    let (mut child, pid) = {
        let mut child = f
            .launcher()
            .args(["--supervise", "--refresh", "1s", "--password-via", "passfile", "--on-change", "signal:USR1", "--"])
            .arg(&app)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let pid: u32 = line.trim().parse().unwrap();
        (child, pid)
    };
    rotate(&f);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the launcher exited");
        assert!(Instant::now() < deadline, "the app got no SIGUSR1");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 143, "{stderr}");
    let seen = std::fs::read_to_string(&log).unwrap();
    assert_eq!(seen.trim(), format!("{pid} 1"), "the same app, connecting with the new password\n{stderr}");
}

/// An app that prints its PID, then runs `body`.
fn announcing(home: &Path, body: &str) -> PathBuf {
    script(home, "announcing.sh", &format!("echo $$\n{body}"))
}

/// Starts `app` under `--supervise` and returns the launcher and the app's PID.
fn supervised(f: &Fixture, app: &Path) -> (Child, u32) {
    let mut child = f
        .launcher()
        .arg("--supervise")
        .arg("--")
        .arg(app)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let pid = line.trim().parse().unwrap_or_else(|_| panic!("the app's PID, not {line:?}"));
    (child, pid)
}

#[test]
fn sigterm_reaches_the_app_and_its_status_is_the_launchers() {
    let f = Fixture::new();
    let app = announcing(&f.home, "trap 'exit 7' TERM\nwhile :; do sleep 0.1; done");
    let (child, _) = supervised(&f, &app);
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("forwarding SIGTERM"), "{stderr}");
}

#[test]
fn an_app_killed_by_sigkill_makes_the_launcher_exit_137() {
    let f = Fixture::new();
    let app = announcing(&f.home, "while :; do sleep 0.1; done");
    let (child, pid) = supervised(&f, &app);
    support::run_ok(Command::new("kill").args(["-KILL", &pid.to_string()]));
    let (code, stderr) = finish(child, "after its app was killed");
    assert_eq!(code, 137, "{stderr}");
}

#[test]
fn in_a_terminal_the_app_has_the_foreground_and_ctrl_c_reaches_it_once() {
    use std::io::Write;
    let f = Fixture::new();
    let app = announcing(&f.home, "while :; do sleep 0.1; done");
    let mut command = f.launcher();
    command.args(["--supervise", "--"]).arg(&app);
    let shell_quoted: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect();
    // `script` runs it on a pseudo-terminal, in the foreground as in a developer's shell; a ^C
    // written to it is the terminal's SIGINT to the foreground process group.
    let mut term = Command::new("script");
    term.args(["-qfec", &format!("exec {}", shell_quoted.join(" ")), "/dev/null"])
        .env_clear()
        .envs(command.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = term.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let app_pid = loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the app did not start");
        if let Ok(pid) = line.trim().parse::<u32>() {
            break pid;
        }
    };
    // Its own process group, which the terminal now sends its signals to (tini's isolate_child).
    let stat = std::fs::read_to_string(format!("/proc/{app_pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let (pgrp, tpgid) = (fields[2], fields[5]);
    assert_eq!(pgrp, app_pid.to_string(), "the app leads a process group of its own: {stat}");
    assert_eq!(tpgid, pgrp, "the terminal's foreground group is the app's: {stat}");
    // A ^C, again every 200 ms until `script` has exited with the launcher: under load `script`
    // has been seen to let one typed ^C go unread.
    let mut stdin = child.stdin.take().unwrap();
    let typing = std::thread::spawn(move || {
        for _ in 0..150 {
            if stdin.write_all(b"\x03").and_then(|()| stdin.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (code, _) = finish(child, "after the terminal's ^C");
    let _ = typing.join();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    // The terminal's SIGINT ended the app; the launcher was not sent one to forward again.
    assert!(!rest.contains("forwarding SIGINT"), "{rest}");
    assert!(rest.contains("the app exited with status 130"), "{rest}");
    assert_eq!(code, 130, "{rest}");
}

/// The PIDs whose parent is `parent`, with their state letter.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let field = |name: &str| {
                status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default()
            };
            (field("PPid:") == parent.to_string()).then(|| (pid, field("State:")))
        })
        .collect()
}

#[test]
fn orphans_of_the_app_come_to_the_launcher_and_are_reaped() {
    let f = Fixture::new();
    // A grandchild whose parent exits at once: it is orphaned, lives 1 s, then ends.
    let app = announcing(&f.home, "sh -c 'sleep 1 & exit 0'\nwhile :; do sleep 0.1; done");
    let (child, app_pid) = supervised(&f, &app);
    let launcher_pid = child.id();
    std::thread::sleep(Duration::from_millis(300));
    let adopted: Vec<_> = children_of(launcher_pid).into_iter().filter(|(pid, _)| *pid != app_pid).collect();
    assert!(!adopted.is_empty(), "the orphan is the launcher's child (a subreaper): {adopted:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let zombies: Vec<_> = children_of(launcher_pid).into_iter().filter(|(_, state)| state.starts_with('Z')).collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");
    let (code, stderr) = stop(child, "TERM");
    assert_eq!(code, 143, "{stderr}");
}

/// The bytes of every readable mapping of `pid` (as root: the launcher is not dumpable, so
/// only a privileged reader gets here at all).
fn memory_of(pid: u32) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut all = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
        let mut chunk = vec![0; usize::try_from(end - start).unwrap()];
        if mem.seek(SeekFrom::Start(start)).is_ok() && mem.read_exact(&mut chunk).is_ok() {
            all.extend_from_slice(&chunk);
        }
    }
    all
}

#[test]
fn the_supervisor_holds_no_fetched_value_once_the_app_runs() {
    let f = Fixture::new();
    let app = announcing(&f.home, "while :; do sleep 0.1; done");
    let (child, _) = supervised(&f, &app);
    let pid = child.id();
    // The app has started: the supervisor has dropped its environment.
    std::thread::sleep(Duration::from_millis(300));
    let memory = memory_of(pid);
    assert!(memory.len() > 1_000_000, "read the supervisor's memory: {} bytes", memory.len());
    // As the app got it, and as it came in Vault's JSON answer (its quote escaped): without the
    // zeroing allocator the answer's freed buffers still hold the latter.
    let escaped = serde_json::to_string(&f.password).unwrap();
    let escaped = &escaped[1..escaped.len() - 1];
    let found = [f.password.as_str(), escaped]
        .iter()
        .any(|needle| memory.windows(needle.len()).any(|w| w == needle.as_bytes()));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let in_environ = environ.windows(f.password.len()).any(|w| w == f.password.as_bytes());
    let (code, stderr) = stop(child, "TERM");
    assert!(!found, "the password is in the supervisor's memory");
    assert!(!in_environ, "the password is in the supervisor's environment");
    assert_eq!(code, 143, "{stderr}");
    assert!(!stderr.contains(&f.password), "{stderr}");
}

#[test]
fn supervise_options_are_refused_where_they_cannot_work() {
    let f = Fixture::new();
    let run = support::Run::of(f.launcher().args(["--on-change", "restart", "--", "true"]));
    run.assert_fails(64, "--on-change goes with --supervise");
    let run = support::Run::of(f.launcher().args(["--supervise", "--on-change", "passfile", "--", "true"]));
    run.assert_fails(64, "needs --password-via passfile");
    let run = support::Run::of(f.launcher().args(["--supervise", "--on-change", "signal:KILL", "--", "true"]));
    run.assert_fails(64, "is not a signal the app can catch");
    let mut check = launcher(&f.home);
    check.env("VAULT_ADDR", &services().bao.addr).env("VAULT_TOKEN", ROOT_TOKEN).env("LAUNCHER_SUPERVISE", "true");
    let run = support::Run::of(check.args(["check", "--credentials", &f.credentials(), "--ca", &f.ca()]));
    run.assert_fails(64, "--supervise goes with running a program");
    // The app's own status is the launcher's.
    let run = support::Run::of(f.launcher().args(["--supervise", "--", "sh", "-c", "exit 3"]));
    assert_eq!(run.code, 3, "{run}");
}

/// Runs `app` (whose driver is `driver`) under `--on-change passfile`: it connects, the password
/// rotates and the supervisor rewrites the `.pgpass`, then the app connects once more the way
/// its pool would. Whether that second connection succeeded, and the launcher's stderr.
fn second_connection_after_rotation(driver: &str, app: &Command) -> (bool, String) {
    let f = Fixture::new();
    // Passwords every driver reads back from a .pgpass (asyncpg does not unescape `\:`).
    let plain = || format!("plain-{}-{}", std::process::id(), unique("pw"));
    rotate_to(&f, plain());
    let again = f.home.join("again");
    let mut child = f
        .launcher()
        .env("APP_AGAIN_AFTER", &again)
        .args(["--supervise", "--refresh", "1s", "--password-via", "passfile", "--on-change", "passfile"])
        .args(["--driver", driver, "--"])
        .arg(app.get_program())
        .args(app.get_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let fail = |mut child: Child, reader: std::thread::JoinHandle<String>, what: &str| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{driver}: {what}\n{}", reader.join().unwrap());
    };
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    if !matches!(first.trim(), "true" | "t") {
        fail(child, reader, &format!("the first connection: {first:?}"));
    }
    let password = rotate_to(&f, plain());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("written in place") => break,
            Ok(_) => {}
            Err(_) => fail(child, reader, "the passfile was not rewritten"),
        }
    }
    std::fs::write(&again, "").unwrap();
    let mut second = String::new();
    stdout.read_line(&mut second).unwrap();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(!stderr.contains(&password) && !stderr.contains(&f.password), "{stderr}");
    (status.success() && matches!(second.trim(), "true" | "t"), stderr)
}

#[test]
fn which_drivers_read_the_rewritten_passfile_at_their_next_connection() {
    let psql = script(
        &support::home(&unique("sup-libpq")),
        "libpq.sh",
        "q='select ssl from pg_stat_ssl where pid = pg_backend_pid()'\n$PSQL -XAtqc \"$q\" || exit 1\n\
         while [ ! -e \"$APP_AGAIN_AFTER\" ]; do sleep 0.05; done\nexec $PSQL -XAtqc \"$q\"",
    );
    // Measured; the README's table says the same. pgx reads the passfile once, when the
    // configuration is parsed (pgxpool parses once): its pool keeps the old password.
    let expected = [
        ("libpq", Command::new(psql), true),
        ("pgx", Command::new(pgx_app()), false),
        ("node-postgres", node_app(), true),
        ("asyncpg", asyncpg_app(), true),
        ("pgjdbc", pgjdbc_app(), true),
    ];
    let measured: Vec<(&str, bool, String)> = std::thread::scope(|scope| {
        let runs: Vec<_> = expected
            .iter()
            .map(|(driver, app, _)| scope.spawn(move || (*driver, second_connection_after_rotation(driver, app))))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).map(|(d, (ok, stderr))| (d, ok, stderr)).collect()
    });
    for ((driver, _, expect), (_, got, stderr)) in expected.iter().zip(&measured) {
        eprintln!("{driver}: reads the rewritten .pgpass at its next connection: {got}");
        assert_eq!(got, expect, "{driver}\n{stderr}");
        // The one that does not is named in a warning.
        assert_eq!(stderr.contains("pgx reads the .pgpass when its configuration is parsed"), !expect, "{stderr}");
    }
}
