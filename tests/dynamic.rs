//! Vault's database secrets engine against the real PostgreSQL: short-lived users, their lease
//! logged and (opt-in) exported, and `--min-ttl` refusing credentials that end too soon.

use std::sync::OnceLock;

use crate::support::{self, Run, bao::ROOT_TOKEN, canary, launcher, pg::psql, services, unique};

/// The `database/` engine configured once per test binary, with roles `app` (1 h) and
/// `short` (60 s).
pub fn database_engine() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let s = services();
        s.bao.api("POST", "/v1/sys/mounts/database", Some(&serde_json::json!({"type": "database"})));
        database_connection(&s.bao, "pg", "vaultadmin", &serde_json::json!({"allowed_roles": "*"}));
        // A static role: an existing user whose password Vault rotates (it sets one at once).
        s.pg.create_role("static_app", &canary());
        s.bao.api(
            "POST",
            "/v1/database/static-roles/static",
            Some(&serde_json::json!({"db_name": "pg", "username": "static_app", "rotation_period": "1h"})),
        );
        let create = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';";
        for (role, ttl) in [("app", "1h"), ("short", "60s")] {
            s.bao.api(
                "POST",
                &format!("/v1/database/roles/{role}"),
                Some(&serde_json::json!({"db_name": "pg", "creation_statements": [create],
                    "default_ttl": ttl, "max_ttl": "2h"})),
            );
        }
    });
}

/// A connection `name` of `bao`'s `database/` engine to the test PostgreSQL, through a
/// superuser `admin` made for it (verify-full: the plugin is pgx and the test certificate has
/// SANs), with `settings` (allowed roles, a username template) added.
pub fn database_connection(bao: &support::Bao, name: &str, admin: &str, settings: &serde_json::Value) {
    let s = services();
    let admin_password = canary();
    s.pg.create_role(admin, &admin_password);
    s.pg.sql(&format!("ALTER ROLE {admin} SUPERUSER"));
    let url = format!(
        "postgresql://{{{{username}}}}:{{{{password}}}}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        s.pg.port,
        s.certs.ca.display()
    );
    let mut config = serde_json::json!({"plugin_name": "postgresql-database-plugin", "connection_url": url,
        "username": admin, "password": admin_password, "password_authentication": "scram-sha-256"});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), settings.as_object()) {
        config.extend(extra.clone());
    }
    bao.api("POST", &format!("/v1/database/config/{name}"), Some(&config));
}

/// On the shared store (after [`database_engine`]): a connection `connection` through a superuser
/// `admin` of its own, whose users are named `ROLE-…`, and a role `role` on it with `ttl` and
/// `max_ttl`; so that what its launches were issued can be counted in pg_roles.
pub fn role_of_its_own(connection: &str, admin: &str, role: &str, ttl: &str, max_ttl: &str) {
    database_engine();
    let s = services();
    database_connection(
        &s.bao,
        connection,
        admin,
        &serde_json::json!({"allowed_roles": role, "username_template": format!("{role}-{{{{random 12}}}}")}),
    );
    let create = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';";
    s.bao.api(
        "POST",
        &format!("/v1/database/roles/{role}"),
        Some(&serde_json::json!({"db_name": connection, "creation_statements": [create],
            "default_ttl": ttl, "max_ttl": max_ttl})),
    );
}

fn dynamic(role: &str, token: &str) -> std::process::Command {
    dynamic_in(&[], role, token)
}

/// [`dynamic`], after `subcommand` (e.g. `check`).
fn dynamic_in(subcommand: &[&str], role: &str, token: &str) -> std::process::Command {
    database_engine();
    let s = services();
    let mut c = launcher(&support::home(&unique("dyn")));
    c.env("VAULT_ADDR", &s.bao.addr).env("VAULT_TOKEN", token).args(subcommand).args([
        "--credentials",
        &format!("vault:database/creds/{role}"),
        "--ca",
        &format!("file:{}", s.certs.ca.display()),
        "--host",
        "localhost",
        "--port",
        &s.pg.port.to_string(),
        "--dbname",
        "postgres",
    ]);
    c
}

#[test]
fn dynamic_users_connect_exist_and_their_lease_is_reported() {
    let script = format!(
        "echo \"lease=$DB_CREDENTIALS_LEASE_ID\"; echo \"expires=$DB_CREDENTIALS_EXPIRES_AT\"; \
         {} -XAtc 'select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()'",
        psql().display()
    );
    let run =
        Run::of(dynamic("app", ROOT_TOKEN).args(["--export-lease", "--min-ttl", "30m", "--", "sh", "-c", &script]));
    run.assert_ok();
    let user_line = run.stdout.lines().last().unwrap();
    let (user, ssl) = user_line.split_once('|').unwrap();
    assert_eq!(ssl, "t", "{run}");
    assert!(user.starts_with("v-"), "an OpenBao-made user: {run}");
    assert_eq!(services().pg.sql(&format!("select count(*) from pg_roles where rolname = '{user}'")).trim(), "1");
    let lease = run.stdout.lines().find_map(|l| l.strip_prefix("lease=")).unwrap();
    assert!(lease.starts_with("database/creds/app/"), "{run}");
    assert!(run.stderr.contains(&format!("lease {lease}: 3600s, renewable")), "{run}");
    let expires = run.stdout.lines().find_map(|l| l.strip_prefix("expires=")).unwrap();
    assert!(expires.len() == 20 && expires.ends_with('Z') && expires.as_bytes()[10] == b'T', "{expires}");
}

#[test]
fn the_tokens_ttl_is_asked_for_beside_the_dynamic_read_not_after_it() {
    // A distant OpenBao: the lookup of the token (whose end ends the lease) goes out with the
    // read of the credentials, not a round trip after it.
    let tap = support::tap::Tap::slow(services().bao.port, std::time::Duration::from_millis(300));
    let run = Run::of(
        dynamic("app", ROOT_TOKEN).env("VAULT_ADDR", format!("http://127.0.0.1:{}", tap.port)).args(["--", "true"]),
    );
    run.assert_ok();
    let (_, answered) = tap.request("GET /v1/database/creds/app").unwrap_or_else(|| panic!("no read: {run}"));
    let (asked, _) = tap.request("/v1/auth/token/lookup-self").unwrap_or_else(|| panic!("no lookup: {run}"));
    assert!(asked < answered.unwrap(), "the token's lookup waited for the read's answer: {run}");
}

#[test]
fn a_token_in_its_last_second_is_not_taken_for_one_that_never_expires() {
    let s = services();
    let created =
        s.bao.api("POST", "/v1/auth/token/create", Some(&serde_json::json!({"ttl": "3s", "policies": ["root"]})));
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    // Its lookup now says `ttl: 0` (less than a second left), as a root token's does.
    std::thread::sleep(std::time::Duration::from_millis(2400));
    let run = Run::of(dynamic("app", &token).args(["--min-ttl", "2s", "--", "true"]));
    run.assert_fails(78, "the credentials expire in 1s, sooner than --min-ttl 2s").assert_no_leak(&token);
}

#[test]
fn min_ttl_refuses_credentials_that_end_too_soon() {
    Run::of(dynamic("short", ROOT_TOKEN).args(["--min-ttl", "5m", "--", "true"]))
        .assert_fails(78, "the credentials expire in 60s, sooner than --min-ttl 300s");
    // A long lease on a short-lived token ends with the token.
    let (_, answer) = services()
        .bao
        .request(
            "POST",
            "/v1/auth/token/create",
            Some(ROOT_TOKEN),
            Some(&serde_json::json!({"policies": ["root"], "ttl": "2m"})),
        )
        .unwrap();
    let token: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let token = token["auth"]["client_token"].as_str().unwrap();
    let run = Run::of(dynamic("app", token).args(["--min-ttl", "5m", "--", "true"]));
    run.assert_fails(78, "sooner than --min-ttl 300s").assert_no_leak(token);
    assert!(run.stderr.contains("the token it hangs on expires sooner"), "{run}");
}

#[test]
fn static_credentials_connect_with_the_password_vault_rotated() {
    let script = format!("{} -XAtc 'select current_user'", psql().display());
    let run = Run::of(dynamic("app", ROOT_TOKEN).args([
        "--credentials",
        "vault:database/static-creds/static",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "static_app", "{run}");
    assert!(!run.stderr.contains("lease "), "static credentials carry no lease: {run}");
}

#[test]
fn a_failed_launch_revokes_the_lease_it_was_issued_with_a_token_it_was_given() {
    // Nothing listens on port 1: the check fails after the database user was created. The
    // root token is not the launcher's to revoke; the lease is.
    let run = Run::of(dynamic("app", ROOT_TOKEN).args(["--port", "1", "--", "true"]));
    run.assert_fails(69, "connection to server at localhost:1 failed");
    assert!(run.stderr.contains("the launch failed: revoked the 1 lease(s) issued to it"), "{run}");
    let lease = run.stderr.split("lease ").nth(1).and_then(|l| l.split(':').next()).unwrap_or_else(|| panic!("{run}"));
    assert!(lease.starts_with("database/creds/app/"), "{run}");
    assert!(!crate::auth::lease_alive(lease), "the lease must be gone: {run}");
}

#[test]
fn launcher_check_leaves_no_dynamic_credentials_behind() {
    let run = Run::of(&mut dynamic_in(&["check"], "app", ROOT_TOKEN));
    run.assert_ok();
    assert!(run.stderr.contains("the check is done: revoked the 1 lease(s) issued to it"), "{run}");
    let lease = run.stderr.split("lease ").nth(1).and_then(|l| l.split(':').next()).unwrap_or_else(|| panic!("{run}"));
    assert!(!crate::auth::lease_alive(lease), "the lease must be gone: {run}");
}

#[test]
fn a_token_that_may_not_revoke_leases_gets_a_warning_and_the_launch_still_fails_as_it_would() {
    // A token that may read database/creds/app and nothing else: the failed launch cannot revoke
    // its lease. It says so (naming the path, not the lease's secret), keeps the check's exit
    // code, and the credentials live on until their lease ends, as the README says.
    database_engine();
    let s = services();
    let policy = unique("creds-only");
    s.bao.api(
        "PUT",
        &format!("/v1/sys/policies/acl/{policy}"),
        Some(&serde_json::json!({"policy": "path \"database/creds/app\" { capabilities = [\"read\"] }"})),
    );
    let created = s.bao.api("POST", "/v1/auth/token/create", Some(&serde_json::json!({"policies": [policy]})));
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let run = Run::of(dynamic("app", &token).args(["--port", "1", "--", "true"]));
    run.assert_fails(69, "connection to server at localhost:1 failed").assert_no_leak(&token);
    assert!(
        run.stderr
            .contains("could not revoke the lease issued to this launch (vault:sys/leases/revoke: permission denied"),
        "{run}"
    );
    assert!(run.stderr.contains("its credentials stay valid until it expires"), "{run}");
    let lease = run.stderr.split("lease ").nth(1).and_then(|l| l.split(':').next()).unwrap_or_else(|| panic!("{run}"));
    let body = serde_json::json!({"lease_id": lease});
    assert!(crate::auth::found("PUT", "/v1/sys/leases/lookup", &body), "the lease outlives the launch: {run}");
    s.bao.api("PUT", "/v1/sys/leases/revoke", Some(&body));
}
