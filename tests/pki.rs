//! Vault's PKI engine: the CA chain of a mount as the trust anchor (the server certificate was
//! issued by the same PKI, no file distributed), and client certificates issued at start-up for
//! mutual TLS: certificate authentication with no password, and SCRAM with
//! `clientcert=verify-full`.

use std::sync::OnceLock;

use crate::support::{self, Pg, Run, bao::ROOT_TOKEN, canary, launcher, pg::psql, services, unique};

struct PkiServer {
    pg: Pg,
}

/// A PKI mount (root CA, a server role, a client role) and a PostgreSQL serving a certificate
/// issued by it, trusting it for client certificates: `certuser` logs in by certificate alone,
/// everyone else by SCRAM and a verified client certificate.
fn pki_server() -> &'static PkiServer {
    static SERVER: OnceLock<PkiServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let s = services();
        let bao = &s.bao;
        bao.api("POST", "/v1/sys/mounts/pki", Some(&serde_json::json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}})));
        bao.api(
            "POST",
            "/v1/pki/root/generate/internal",
            Some(&serde_json::json!({"common_name": "launcher pki root", "ttl": "8760h", "key_type": "ec", "key_bits": 256})),
        );
        bao.api(
            "POST",
            "/v1/pki/roles/server",
            Some(&serde_json::json!({"allowed_domains": ["localhost"], "allow_bare_domains": true, "allow_ip_sans": true,
                "key_type": "ec", "key_bits": 256, "max_ttl": "72h"})),
        );
        bao.api(
            "POST",
            "/v1/pki/roles/client",
            Some(&serde_json::json!({"allow_any_name": true, "enforce_hostnames": false, "server_flag": false,
                "client_flag": true, "key_type": "ec", "key_bits": 256, "max_ttl": "72h"})),
        );
        let issued =
            bao.api("POST", "/v1/pki/issue/server", Some(&serde_json::json!({"common_name": "localhost", "ip_sans": "127.0.0.1"})));
        let dir = s.root.join("pg-pki");
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key, ca) = (dir.join("issued.crt"), dir.join("issued.key"), dir.join("pki-ca.crt"));
        std::fs::write(&cert, issued["data"]["certificate"].as_str().unwrap()).unwrap();
        std::fs::write(&key, issued["data"]["private_key"].as_str().unwrap()).unwrap();
        std::fs::write(&ca, issued["data"]["issuing_ca"].as_str().unwrap()).unwrap();
        if support::is_root() {
            let out = support::run_ok(std::process::Command::new("id").args(["-u", "postgres"]));
            let uid: u32 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
            std::os::unix::fs::chown(&ca, Some(uid), None).unwrap();
        }
        let extra = format!("ssl_ca_file = '{}'\n", ca.display());
        let hba = "local all all trust\nhostssl all certuser 127.0.0.0/8 cert\n\
                   hostssl all all 127.0.0.0/8 scram-sha-256 clientcert=verify-full\n";
        let pg = support::on_keeper_thread(move || {
            Pg::start_custom(
                &dir,
                &cert,
                &key,
                true,
                support::free_port_pair(),
                Some("CREATE ROLE certuser LOGIN;"),
                Some(support::pg::Custom { conf: &extra, hba: Some(hba), ..Default::default() }),
            )
        });
        PkiServer { pg }
    })
}

fn launch(home: &std::path::Path, port: u16) -> std::process::Command {
    let mut c = launcher(home);
    c.env("VAULT_ADDR", &services().bao.addr).env("VAULT_TOKEN", ROOT_TOKEN).args([
        "--ca",
        "vault-pki:pki",
        "--host",
        "localhost",
        "--port",
        &port.to_string(),
        "--dbname",
        "postgres",
    ]);
    c
}

/// psql as certuser with `cert` and `key` (sslmode=require: the certificate is what is tested).
fn libpq_as_certuser(port: u16, cert: &std::path::Path, key: &std::path::Path, sql: &str) -> std::process::Output {
    std::process::Command::new(psql())
        .env_clear()
        .envs([("PGHOST", "localhost"), ("PGUSER", "certuser"), ("PGDATABASE", "postgres"), ("PGSSLMODE", "require")])
        .env("PGPORT", port.to_string())
        .env("PGSSLCERT", cert)
        .env("PGSSLKEY", key)
        .args(["-XAtc", sql])
        .output()
        .unwrap()
}

const WHO: &str = "select current_user, ssl, client_dn from pg_stat_ssl where pid = pg_backend_pid()";

#[test]
fn certificate_authentication_with_no_password() {
    let server = pki_server();
    let home = support::home(&unique("pki"));
    let run = Run::of(
        launch(&home, server.pg.port)
            .args(["--user", "certuser", "--client-cert", "vault-pki:pki/issue/client", "--"])
            .arg(psql())
            .args(["-XAtc", WHO]),
    );
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "certuser|t|/CN=certuser", "{run}");
    assert!(run.stderr.contains("client certificate for \"certuser\" issued by vault-pki:pki/issue/client"), "{run}");
    // Without a client certificate the server refuses; the launcher says so before the app runs.
    Run::of(launch(&home, server.pg.port).args(["--user", "certuser", "--", "true"]))
        .assert_fails(77, "connection requires a valid client certificate");
}

/// A driver's app behind the launcher as certuser, with an issued client certificate.
fn certuser_behind(driver: &str, app: &std::process::Command) -> (Run, std::path::PathBuf) {
    let home = support::home(&unique(&format!("pki-{driver}")));
    let run = Run::of(
        launch(&home, pki_server().pg.port)
            .args(["--user", "certuser", "--client-cert", "vault-pki:pki/issue/client", "--driver", driver, "--"])
            .arg(app.get_program())
            .args(app.get_args()),
    );
    (run, home)
}

#[test]
fn a_rustls_app_presents_the_issued_client_certificate() {
    let (run, _) = certuser_behind("rustls", &support::drivers::rustls_app());
    // certuser logs in by certificate alone: the app's rustls config presented PGSSLCERT/PGSSLKEY.
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "true", "{run}");
}

#[test]
fn a_pgjdbc_app_presents_the_issued_client_certificate_as_pkcs8() {
    let server = pki_server();
    let (run, home) = certuser_behind("pgjdbc", &support::drivers::pgjdbc_app());
    // certuser logs in by certificate alone: pgjdbc read sslcert and the .pk8 key from the URL.
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "true", "{run}");
    // A certificate libpq finds by itself is not pgjdbc's: said, not silently dropped.
    let dir = support::scratch_dir("pgjdbc-found");
    let cert = dir.join("client.crt");
    let key = dir.join("client.key");
    let issued =
        services().bao.api("POST", "/v1/pki/issue/client", Some(&serde_json::json!({"common_name": "certuser"})));
    std::fs::write(&cert, issued["data"]["certificate"].as_str().unwrap()).unwrap();
    std::fs::write(&key, issued["data"]["private_key"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = Run::of(
        launch(&home, server.pg.port)
            .env("PGSSLCERT", &cert)
            .env("PGSSLKEY", &key)
            .args(["--user", "certuser", "--driver", "pgjdbc", "--", "true"]),
    );
    run.assert_ok();
    assert!(run.stderr.contains("pgjdbc reads neither PGSSLCERT/PGSSLKEY nor a PEM key"), "{run}");
}

#[test]
fn scram_with_clientcert_verify_full() {
    let server = pki_server();
    let role = unique("mtls");
    let password = canary();
    server.pg.create_role(&role, &password);
    let home = support::home(&role);
    let kv = format!("pki/{role}");
    services().bao.put_kv2(&kv, &serde_json::json!({"username": role, "password": password}));
    let script = format!("stat -c %a \"$PGSSLKEY\"; {} -XAtc \"{WHO}\"", psql().display());
    let run = Run::of(
        launch(&home, server.pg.port)
            .args(["--credentials", &format!("vault:secret/{kv}"), "--client-cert", "vault-pki:pki/issue/client"])
            .args(["--", "sh", "-c", &script]),
    );
    run.assert_ok().assert_no_leak(&password);
    assert_eq!(run.stdout.trim(), format!("600\n{role}|t|/CN={role}"), "{run}");
}

#[test]
fn client_certificate_files_libpq_finds_are_presented_by_the_check_and_judged_as_libpq_does() {
    use std::os::unix::fs::PermissionsExt;
    let server = pki_server();
    let home = support::home(&unique("pki-files"));
    let issued =
        services().bao.api("POST", "/v1/pki/issue/client", Some(&serde_json::json!({"common_name": "certuser"})));
    let dir = home.join(".postgresql");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("postgresql.crt"), dir.join("postgresql.key"));
    std::fs::write(&cert, issued["data"]["certificate"].as_str().unwrap()).unwrap();
    std::fs::write(&key, issued["data"]["private_key"].as_str().unwrap()).unwrap();
    let set_mode = |mode| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
    set_mode(0o600);
    // ~/.postgresql/postgresql.crt and .key, as libpq finds them: the check presents them, and the
    // app's libpq does the same by itself.
    let who = || {
        let mut c = launch(&home, server.pg.port);
        c.args(["--user", "certuser", "--"]).arg(psql()).args(["-XAtc", WHO]);
        c
    };
    let run = Run::of(&mut who());
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "certuser|t|/CN=certuser", "{run}");

    // Elsewhere, named by PGSSLCERT and PGSSLKEY.
    let moved = home.join("mounted");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(&dir, moved.join("tls")).unwrap();
    let (cert_at, key_at) = (moved.join("tls/postgresql.crt"), moved.join("tls/postgresql.key"));
    let run = Run::of(who().env("PGSSLCERT", &cert_at).env("PGSSLKEY", &key_at));
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "certuser|t|/CN=certuser", "{run}");

    // A key others may read, or no key: libpq refuses, in these words, and so does the check.
    std::fs::set_permissions(&key_at, std::fs::Permissions::from_mode(0o644)).unwrap();
    Run::of(who().env("PGSSLCERT", &cert_at).env("PGSSLKEY", &key_at)).assert_fails(
        78,
        &format!(
            "private key file \"{}\" has group or world access; file must have permissions u=rw (0600)",
            key_at.display()
        ),
    );
    Run::of(who().env("PGSSLCERT", &cert_at).env("PGSSLKEY", moved.join("none.key"))).assert_fails(
        78,
        &format!("certificate present, but not private key file \"{}\"", moved.join("none.key").display()),
    );
    // A certificate libpq cannot read is that error, before any word about the key.
    Run::of(who().env("PGSSLCERT", &moved).env("PGSSLKEY", moved.join("none.key")))
        .assert_fails(78, &format!("could not read certificate file \"{}\"", moved.display()));
    let libpq = libpq_as_certuser(server.pg.port, &cert_at, &key_at, "select 1");
    let said = String::from_utf8_lossy(&libpq.stderr);
    assert!(said.contains("has group or world access"), "libpq's own verdict on the 0644 key: {said}");
}

#[test]
fn a_p521_client_key_is_presented_as_libpq_presents_it() {
    // libpq's OpenSSL signs with any key it reads; ring has no P-521 (nor Ed448 or RSASSA-PSS,
    // whose requests Vault cannot sign: the unit tests sign with those). A P-521 certificate for
    // certuser, signed by the PKI: the check logs in with it, as psql does.
    let server = pki_server();
    let bao = &services().bao;
    bao.api(
        "POST",
        "/v1/pki/roles/client-any",
        Some(&serde_json::json!({"allow_any_name": true, "enforce_hostnames": false, "server_flag": false,
            "client_flag": true, "key_type": "any", "max_ttl": "72h"})),
    );
    let home = support::home(&unique("pki-keys"));
    let dir = home.join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("p521.key");
    support::run_ok(
        std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"])
            .arg("-out")
            .arg(&key),
    );
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let csr = support::run_ok(
        std::process::Command::new("openssl").args(["req", "-new", "-subj", "/CN=certuser", "-key"]).arg(&key),
    );
    let signed = bao.api(
        "POST",
        "/v1/pki/sign/client-any",
        Some(&serde_json::json!({"csr": String::from_utf8(csr.stdout).unwrap(), "common_name": "certuser"})),
    );
    let cert = dir.join("p521.crt");
    std::fs::write(&cert, signed["data"]["certificate"].as_str().unwrap()).unwrap();
    let libpq = libpq_as_certuser(server.pg.port, &cert, &key, "select current_user");
    assert_eq!(
        String::from_utf8_lossy(&libpq.stdout).trim(),
        "certuser",
        "libpq: {}",
        String::from_utf8_lossy(&libpq.stderr)
    );
    let run = Run::of(
        launch(&home, server.pg.port)
            .args(["--user", "certuser", "--"])
            .arg(psql())
            .args(["-XAtc", "select current_user"])
            .env("PGSSLCERT", &cert)
            .env("PGSSLKEY", &key),
    );
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "certuser", "{run}");

    // Another key than the certificate's: libpq refuses, in these words, and so does the check.
    let other = dir.join("other.key");
    support::run_ok(
        std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521", "-out"])
            .arg(&other),
    );
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let words = "key values mismatch";
    let libpq = libpq_as_certuser(server.pg.port, &cert, &other, "select 1");
    assert!(String::from_utf8_lossy(&libpq.stderr).contains(words), "{}", String::from_utf8_lossy(&libpq.stderr));
    Run::of(
        launch(&home, server.pg.port)
            .args(["--user", "certuser", "--", "true"])
            .env("PGSSLCERT", &cert)
            .env("PGSSLKEY", &other),
    )
    .assert_fails(78, words);
}
