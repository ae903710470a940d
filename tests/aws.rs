//! AWS Secrets Manager as a source, against a real moto server: RDS-shaped secrets, versions,
//! ARNs, CA bundles as string or binary secrets, mixing with Vault, and each failure.

use std::process::Command;

use crate::support::{self, Run, bao::ROOT_TOKEN, canary, launcher, moto::REGION, pg::psql, services, unique};

const TLS_ROW: &str = "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()";

/// A canary AWS secret key: it must never be printed, nor reach the app.
fn aws_secret_key() -> String {
    format!("aws-secret-{}", canary())
}

/// The launcher with moto as its AWS endpoint and dummy static credentials.
pub fn aws_launcher(name: &str, secret_key: &str) -> Command {
    let mut c = launcher(&support::home(name));
    c.env("AWS_ENDPOINT_URL", &services().moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIATESTING")
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

/// A role on the shared server and an RDS-shaped secret for it (port as given).
pub fn rds_secret(port: &serde_json::Value) -> (String, String, String) {
    let s = services();
    let role = unique("rds");
    let password = canary();
    s.pg.create_role(&role, &password);
    let name = format!("prod/{role}/db");
    let value = serde_json::json!({"engine": "postgres", "host": "localhost", "username": role,
        "password": password, "dbname": "postgres", "port": port, "dbInstanceIdentifier": "ignored"});
    s.moto.create_string(&name, &value.to_string());
    (role, password, name)
}

pub fn ca_secret() -> String {
    let name = unique("ca/bundle");
    services().moto.create_string(&name, &std::fs::read_to_string(&services().certs.ca).unwrap());
    name
}

#[test]
fn rds_secret_with_numeric_port_connects_and_aws_keys_stay_behind() {
    let (role, password, name) = rds_secret(&serde_json::json!(services().pg.port));
    let ca = ca_secret();
    let key = aws_secret_key();
    let run = Run::of(
        aws_launcher(&role, &key)
            .args(["--credentials", &format!("aws-sm:{name}"), "--ca", &format!("aws-sm:{ca}")])
            .args(["--", "sh", "-c", &format!("env | grep '^AWS_' | sort; {} -XAtc '{TLS_ROW}'", psql().display())]),
    );
    run.assert_ok().assert_no_leak(&password).assert_no_leak(&key);
    assert!(run.stdout.contains("t|TLSv1.3"), "{run}");
    assert!(!run.stdout.contains("AWS_ACCESS_KEY_ID"), "static keys the launcher used are removed: {run}");
    assert!(run.stdout.contains(&format!("AWS_REGION={REGION}")), "{run}");
}

#[test]
fn string_port_arn_and_version_stage() {
    let (role, password, name) = rds_secret(&serde_json::json!(services().pg.port.to_string()));
    let arn = services().moto.call("DescribeSecret", &serde_json::json!({"SecretId": name})).unwrap().1["ARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = canary();
    let rotated = serde_json::json!({"host": "localhost", "username": role, "password": wrong,
        "dbname": "postgres", "port": services().pg.port.to_string()});
    services().moto.put_string(&name, &rotated.to_string());
    let ca_arn =
        services().moto.create_string(&unique("ca/arn"), &std::fs::read_to_string(&services().certs.ca).unwrap());
    let ca = format!("aws-sm:{ca_arn}");
    let key = aws_secret_key();
    // The default region is another one: only the ARNs' region can find these secrets.
    let aws_launcher = |role: &str, key: &str| {
        let mut c = aws_launcher(role, key);
        c.env("AWS_REGION", "eu-west-1");
        c
    };

    Run::of(aws_launcher(&role, &key).args(["--credentials", &format!("aws-sm:{arn}"), "--ca", &ca, "--", "true"]))
        .assert_fails(77, "password authentication failed")
        .assert_no_leak(&wrong)
        .assert_no_leak(&key);
    Run::of(aws_launcher(&role, &key).args([
        "--credentials",
        &format!("aws-sm:{arn}?version-stage=AWSPREVIOUS"),
        "--ca",
        &ca,
        "--",
        "true",
    ]))
    .assert_ok()
    .assert_no_leak(&password)
    .assert_no_leak(&key);
}

#[test]
fn master_user_secret_takes_host_and_port_from_flags_and_ca_from_binary() {
    let s = services();
    let role = unique("master");
    let password = canary();
    s.pg.create_role(&role, &password);
    let name = format!("rds!db-{role}");
    s.moto.create_string(&name, &serde_json::json!({"username": role, "password": password}).to_string());
    let ca = unique("ca-binary");
    s.moto.create_binary(&ca, &std::fs::read(&s.certs.ca).unwrap());
    let key = aws_secret_key();
    let creds = format!("aws-sm:{name}");
    let ca_ref = format!("aws-sm:{ca}");

    Run::of(aws_launcher(&role, &key).args(["--credentials", &creds, "--ca", &ca_ref, "--", "true"]))
        .assert_fails(78, &format!("no database host: pass --host, add a \"host\" field to {creds}, or set PGHOST"))
        .assert_no_leak(&password);
    let run = Run::of(
        aws_launcher(&role, &key)
            .args(["--credentials", &creds, "--ca", &ca_ref])
            .args(["--host", "localhost", "--port", &s.pg.port.to_string(), "--dbname", "postgres", "--"])
            .arg(psql())
            .args(["-XAtc", TLS_ROW]),
    );
    run.assert_ok().assert_no_leak(&password).assert_no_leak(&key);
    assert_eq!(run.stdout.trim(), "t|TLSv1.3", "{run}");
}

#[test]
fn vault_credentials_with_an_aws_ca_are_fetched_together() {
    let s = services();
    let role = unique("mixed");
    let password = canary();
    s.pg.create_role(&role, &password);
    s.bao.put_kv2(
        &format!("mixed/{role}"),
        &serde_json::json!({"username": role, "password": password, "host": "localhost", "port": s.pg.port}),
    );
    let ca = ca_secret();
    let key = aws_secret_key();
    let run = Run::of(
        aws_launcher(&role, &key)
            .env("VAULT_ADDR", &s.bao.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .env("PGDATABASE", "postgres")
            .args(["--credentials", &format!("vault:secret/mixed/{role}"), "--ca", &format!("aws-sm:{ca}"), "--"])
            .arg(psql())
            .args(["-XAtc", TLS_ROW]),
    );
    run.assert_ok().assert_no_leak(&password).assert_no_leak(&key);
    assert_eq!(run.stdout.trim(), "t|TLSv1.3", "{run}");
}

#[test]
fn aws_failures_map_to_their_exit_codes() {
    let (role, password, name) = rds_secret(&serde_json::json!(services().pg.port));
    let ca = format!("aws-sm:{}", ca_secret());
    let key = aws_secret_key();
    let creds = format!("aws-sm:{name}");
    let run = |cmd: &mut Command| {
        let r = Run::of(cmd);
        r.assert_no_leak(&password).assert_no_leak(&key);
        r
    };

    run(aws_launcher(&role, &key).args(["--credentials", "aws-sm:no/such/secret", "--ca", &ca, "--", "true"]))
        .assert_fails(78, "aws-sm:no/such/secret: no secret at this path");

    let not_json = unique("not-json");
    services().moto.create_string(&not_json, "password=hunter2-canary");
    let r = run(aws_launcher(&role, &key).args([
        "--credentials",
        &format!("aws-sm:{not_json}"),
        "--ca",
        &ca,
        "--",
        "true",
    ]));
    r.assert_fails(65, &format!("aws-sm:{not_json}: is not a JSON object")).assert_no_leak("hunter2-canary");

    run(aws_launcher(&role, &key).args(["--credentials", &creds, "--ca", &format!("{creds}#nope"), "--", "true"]))
        .assert_fails(65, &format!("{creds}#nope: field \"nope\" is missing (fields present: dbInstanceIdentifier, dbname, engine, host, password, port, username)"));

    let closed = format!("http://127.0.0.1:{}", support::free_port_pair());
    run(aws_launcher(&role, &key).env("AWS_ENDPOINT_URL", &closed).args([
        "--credentials",
        &creds,
        "--ca",
        &ca,
        "--",
        "true",
    ]))
    .assert_fails(69, ": cannot reach AWS Secrets Manager: dispatch failure");

    run(aws_launcher(&role, &key).args(["--credentials", "aws-sm:db?stage=x", "--ca", &ca, "--", "true"]))
        .assert_fails(78, "?version-stage=STAGE");
}
