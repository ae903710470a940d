//! Machine logins to a real OpenBao: AppRole from files (plain and response-wrapped secret
//! ids), JWT with a token the test signs itself; the login token is revoked when nothing hangs
//! on it and kept while dynamic credentials depend on it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use openssl::pkey::Private;

use crate::support::{Fixture, Run, launcher, services, unique};

pub(crate) struct AuthSetup {
    pub(crate) role_id: String,
    jwt_key: EcKey<Private>,
}

/// AppRole and JWT auth mounted once, both giving a policy that reads KV and database creds.
pub(crate) fn setup() -> &'static AuthSetup {
    static SETUP: OnceLock<AuthSetup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let bao = &services().bao;
        let policy = "path \"secret/data/*\" { capabilities = [\"read\"] }\n\
                      path \"database/creds/*\" { capabilities = [\"read\"] }\n";
        bao.api("PUT", "/v1/sys/policies/acl/launcher-read", Some(&serde_json::json!({"policy": policy})));
        bao.api("POST", "/v1/sys/auth/approle", Some(&serde_json::json!({"type": "approle"})));
        bao.api(
            "POST",
            "/v1/auth/approle/role/launcher",
            Some(&serde_json::json!({"token_policies": ["launcher-read"], "token_ttl": "10m"})),
        );
        let role_id = bao.api("GET", "/v1/auth/approle/role/launcher/role-id", None)["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let jwt_key = EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap();
        let public = String::from_utf8(jwt_key.public_key_to_pem().unwrap()).unwrap();
        bao.api("POST", "/v1/sys/auth/jwt", Some(&serde_json::json!({"type": "jwt"})));
        bao.api("POST", "/v1/auth/jwt/config", Some(&serde_json::json!({"jwt_validation_pubkeys": [public]})));
        bao.api(
            "POST",
            "/v1/auth/jwt/role/launcher",
            Some(&serde_json::json!({"role_type": "jwt", "bound_audiences": ["launcher"], "user_claim": "sub",
                "token_policies": ["launcher-read"], "token_ttl": "10m"})),
        );
        AuthSetup { role_id, jwt_key }
    })
}

pub(crate) fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub(crate) fn new_secret_id(wrap: bool) -> String {
    setup();
    let bao = &services().bao;
    let header = if wrap { "X-Vault-Wrap-TTL: 60s\r\n" } else { "" };
    let (status, body) = bao
        .request_with(
            "POST",
            "/v1/auth/approle/role/launcher/secret-id",
            Some(crate::support::bao::ROOT_TOKEN),
            None,
            header,
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    if wrap {
        v["wrap_info"]["token"].as_str().unwrap().to_owned()
    } else {
        v["data"]["secret_id"].as_str().unwrap().to_owned()
    }
}

/// `--vault-auth approle` with the role id and `secret_id` in files; no VAULT_TOKEN at all.
fn approle(f: &Fixture, secret_id: &str, wrapped: bool) -> std::process::Command {
    let s = setup();
    let role_id = secret_file(&f.home, "role-id", &s.role_id);
    let secret = secret_file(&f.home, &unique("secret-id"), secret_id);
    let mut c = launcher(&f.home);
    c.env("VAULT_ADDR", &services().bao.addr)
        .args(["--vault-auth", "approle", "--vault-role-id-file"])
        .arg(role_id)
        .arg("--vault-secret-id-file")
        .arg(secret)
        .args(["--credentials", &f.credentials(), "--ca", &f.ca()]);
    if wrapped {
        c.arg("--vault-secret-id-wrapped");
    }
    c
}

pub(crate) fn accessor_of(run: &Run) -> String {
    let line = run.stderr.lines().find(|l| l.contains("token accessor ")).unwrap_or_else(|| panic!("{run}"));
    line.split("token accessor ").nth(1).unwrap().split(',').next().unwrap().to_owned()
}

/// Whether a lookup (as root) of `body` at `path` finds it.
pub(crate) fn found(method: &str, path: &str, body: &serde_json::Value) -> bool {
    let (status, _) = services().bao.request(method, path, Some(crate::support::bao::ROOT_TOKEN), Some(body)).unwrap();
    status == 200
}

pub(crate) fn token_alive(accessor: &str) -> bool {
    found("POST", "/v1/auth/token/lookup-accessor", &serde_json::json!({"accessor": accessor}))
}

#[test]
fn approle_from_files_logs_in_and_revokes_its_token() {
    let f = Fixture::new();
    let secret_id = new_secret_id(false);
    let run = Run::of(approle(&f, &secret_id, false).args(["--", "true"]));
    run.assert_ok().assert_no_leak(&f.password).assert_no_leak(&secret_id).assert_no_leak(&setup().role_id);
    assert!(run.stderr.contains("logged in with AppRole"), "{run}");
    assert!(run.stderr.contains("revoked the Vault login token"), "{run}");
    assert!(!token_alive(&accessor_of(&run)), "the login token must be revoked: {run}");
}

#[test]
fn the_login_token_is_revoked_while_the_check_runs_and_before_the_exec() {
    let f = Fixture::new();
    let secret_id = new_secret_id(false);
    // A distant OpenBao, and a tap that sees when the check reaches PostgreSQL.
    let bao = crate::support::tap::Tap::slow(services().bao.port, std::time::Duration::from_millis(400));
    let pg = crate::support::tap::Tap::start(services().pg.port);
    let mut cmd = approle(&f, &secret_id, false);
    cmd.env("VAULT_ADDR", format!("http://127.0.0.1:{}", bao.port)).args(["--port", &pg.port.to_string()]);
    let run = Run::of(cmd.args(["--", "true"]));
    run.assert_ok().assert_no_leak(&f.password).assert_no_leak(&secret_id);
    assert!(!token_alive(&accessor_of(&run)), "the login token must be revoked before the exec: {run}");
    // The revocation is the last answer OpenBao gives; the check did not wait for it.
    let (checked, revoked) = (pg.first_request().unwrap(), bao.last_answer().unwrap());
    assert!(checked < revoked, "the check waited for the revocation: {run}");
    // A second connection was opened during the login, for the lookup and the read after it.
    assert_eq!(bao.opened_before_first_answer(), 2, "no connection warmed during the login: {run}");
    assert_eq!(bao.most_in_flight(), 2, "the lookup and the read went out together: {run}");
}

#[test]
fn a_wrapped_secret_id_works_once_and_only_from_an_approle_endpoint() {
    let f = Fixture::new();
    let wrapping = new_secret_id(true);
    Run::of(approle(&f, &wrapping, true).args(["--", "true"])).assert_ok().assert_no_leak(&wrapping);
    Run::of(approle(&f, &wrapping, true).args(["--", "true"]))
        .assert_fails(77, "the wrapped secret id is not a valid wrapping token (it may have been used already)")
        .assert_no_leak(&wrapping);
    // A wrapping token for something else (a KV read) is refused before unwrapping.
    let (status, body) = services()
        .bao
        .request_with(
            "GET",
            &format!("/v1/secret/data/{}", f.kv_path),
            Some(crate::support::bao::ROOT_TOKEN),
            None,
            "X-Vault-Wrap-TTL: 60s\r\n",
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let other: serde_json::Value = serde_json::from_str(&body).unwrap();
    let other = other["wrap_info"]["token"].as_str().unwrap();
    Run::of(approle(&f, other, true).args(["--", "true"]))
        .assert_fails(
            77,
            &format!("was created at \"secret/data/{}\", not by auth/approle/role/NAME/secret-id", f.kv_path),
        )
        .assert_no_leak(&f.password);
}

#[test]
fn the_login_token_stays_while_dynamic_credentials_hang_on_it() {
    crate::dynamic::database_engine();
    let f = Fixture::new();
    let s = services();
    let secret_id = new_secret_id(false);
    let tap = crate::support::tap::Tap::start(s.bao.port);
    let mut cmd = approle(&f, &secret_id, false);
    cmd.env("VAULT_ADDR", format!("http://127.0.0.1:{}", tap.port))
        .args(["--credentials", "vault:database/creds/app", "--host", "localhost", "--port", &s.pg.port.to_string()])
        .args(["--dbname", "postgres", "--", "true"]);
    let run = Run::of(&mut cmd);
    run.assert_ok().assert_no_leak(&secret_id);
    // The login said how long its token lives: nothing asks again.
    assert!(tap.request("lookup-self").is_none(), "{run}");
    assert!(!run.stderr.contains("revoked"), "{run}");
    assert!(token_alive(&accessor_of(&run)), "revoking it would revoke the database user: {run}");
    assert!(run.stderr.contains("the token it hangs on expires sooner, in "), "token TTL 10m < lease 1h: {run}");
}

/// Whether Vault still knows the lease `id` (revoking a token revokes its leases in the
/// background, so a revoked lease is waited for).
pub(crate) fn lease_alive(id: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let alive = found("PUT", "/v1/sys/leases/lookup", &serde_json::json!({"lease_id": id}));
        if !alive || std::time::Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_failed_check_revokes_the_login_token_and_the_credentials_issued_under_it() {
    crate::dynamic::database_engine();
    let f = Fixture::new();
    let secret_id = new_secret_id(false);
    let mut cmd = approle(&f, &secret_id, false);
    // Nothing listens on port 1: the check fails after the database user was created.
    cmd.args(["--credentials", "vault:database/creds/app", "--host", "localhost", "--port", "1"])
        .args(["--dbname", "postgres", "--", "true"]);
    let run = Run::of(&mut cmd);
    run.assert_fails(69, "connection to server at localhost:1 failed").assert_no_leak(&secret_id);
    assert!(run.stderr.contains("the launch failed: revoked the Vault login token"), "{run}");
    assert!(!token_alive(&accessor_of(&run)), "{run}");
    let lease = run.stderr.split("lease ").nth(1).and_then(|l| l.split(':').next()).unwrap_or_else(|| panic!("{run}"));
    assert!(lease.starts_with("database/creds/app/"), "{run}");
    assert!(!lease_alive(lease), "the database user must go with the token: {run}");
}

#[test]
fn a_failed_fetch_revokes_the_login_token() {
    let f = Fixture::new();
    let secret_id = new_secret_id(false);
    let ca = format!("vault:secret/{}#no_such_field", f.kv_path);
    let run = Run::of(approle(&f, &secret_id, false).args(["--ca", &ca, "--", "true"]));
    run.assert_fails(65, "field \"no_such_field\" is missing").assert_no_leak(&secret_id).assert_no_leak(&f.password);
    assert!(run.stderr.contains("the launch failed: revoked the Vault login token"), "{run}");
    assert!(!token_alive(&accessor_of(&run)), "{run}");
}

fn b64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes).replace('+', "-").replace('/', "_").trim_end_matches('=').to_owned()
}

/// An ES256 JWT signed with the key the JWT auth mount trusts.
fn jwt(key: &EcKey<Private>, sub: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = b64url(br#"{"alg":"ES256","typ":"JWT"}"#);
    let claims = serde_json::json!({"sub": sub, "aud": "launcher", "iat": now, "nbf": now - 5, "exp": now + 300});
    let signing_input = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let digest = hash(MessageDigest::sha256(), signing_input.as_bytes()).unwrap();
    let sig = EcdsaSig::sign(&digest, key).unwrap();
    let mut raw = sig.r().to_vec_padded(32).unwrap();
    raw.extend(sig.s().to_vec_padded(32).unwrap());
    format!("{signing_input}.{}", b64url(&raw))
}

#[test]
fn jwt_login_with_a_token_the_test_signed() {
    let f = Fixture::new();
    let token = jwt(&setup().jwt_key, "app-1");
    let jwt_file = secret_file(&f.home, "jwt", &token);
    let run = Run::of(
        launcher(&f.home)
            .env("VAULT_ADDR", &services().bao.addr)
            .args(["--vault-auth", "jwt", "--vault-role", "launcher", "--vault-jwt-file"])
            .arg(&jwt_file)
            .args(["--credentials", &f.credentials(), "--ca", &f.ca(), "--", "true"]),
    );
    run.assert_ok().assert_no_leak(&token).assert_no_leak(&f.password);
    assert!(run.stderr.contains("logged in with JWT"), "{run}");

    let forged = jwt(&EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(), "app-1");
    std::fs::write(&jwt_file, &forged).unwrap();
    Run::of(
        launcher(&f.home)
            .env("VAULT_ADDR", &services().bao.addr)
            .args(["--vault-auth", "jwt", "--vault-role", "launcher", "--vault-jwt-file"])
            .arg(&jwt_file)
            .args(["--credentials", &f.credentials(), "--", "true"]),
    )
    .assert_fails(77, "permission denied")
    .assert_no_leak(&forged);

    Run::of(launcher(&f.home).args(["--vault-auth", "approle", "--credentials", &f.credentials(), "--", "true"]))
        .assert_fails(64, "--vault-auth approle needs --vault-role-id-file");
}
