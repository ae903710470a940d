//! Mounted secret files: a Docker/Compose secrets directory and a Kubernetes secret volume
//! (symlinks through `..data`) as credentials, one file of them as the CA, and the warning for
//! a secret file others can read.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::support::{self, Run, canary, launcher, pg::psql, services, unique};

/// Writes `name` with a trailing newline, as `echo` or `kubectl create secret` would.
fn put(dir: &Path, name: &str, value: &str, mode: u32) {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn secrets_for(dir: &Path, role: &str, password: &str, password_mode: u32) {
    let s = services();
    std::fs::create_dir_all(dir).unwrap();
    put(dir, "username", role, 0o600);
    put(dir, "password", password, password_mode);
    put(dir, "host", "localhost", 0o600);
    put(dir, "port", &s.pg.port.to_string(), 0o600);
    put(dir, "dbname", "postgres", 0o600);
    std::fs::copy(&s.certs.ca, dir.join("ca.pem")).unwrap();
    std::fs::set_permissions(dir.join("ca.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn docker_secrets_directory_is_a_set_of_fields() {
    let role = unique("docker");
    let password = canary();
    services().pg.create_role(&role, &password);
    let home = support::home(&role);
    let dir = home.join("run-secrets");
    secrets_for(&dir, &role, &password, 0o600);
    let creds = format!("file:{}", dir.display());
    let run = Run::of(
        launcher(&home)
            .args(["--credentials", &creds, "--ca", &format!("{creds}#ca.pem"), "--"])
            .arg(psql())
            .args(["-XAtc", "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"]),
    );
    run.assert_ok().assert_no_leak(&password);
    assert_eq!(run.stdout.trim(), format!("{role}|t"), "{run}");
    assert!(!run.stderr.contains("readable by others"), "0600 secrets and a public CA: no warning\n{run}");
}

#[test]
fn kubernetes_secret_volume_follows_its_symlinks_and_loose_modes_are_warned() {
    let role = unique("k8s");
    let password = canary();
    services().pg.create_role(&role, &password);
    let home = support::home(&role);
    let volume = home.join("volume");
    let generation = volume.join("..2026_11_30_21_00_00.000000001");
    secrets_for(&generation, &role, &password, 0o644);
    symlink("..2026_11_30_21_00_00.000000001", volume.join("..data")).unwrap();
    for name in ["username", "password", "host", "port", "dbname", "ca.pem"] {
        symlink(format!("..data/{name}"), volume.join(name)).unwrap();
    }
    let creds = format!("file:{}", volume.display());
    let run =
        Run::of(launcher(&home).args(["--credentials", &creds, "--ca", &format!("{creds}#ca.pem"), "--", "true"]));
    run.assert_ok().assert_no_leak(&password);
    let warning = format!("warning: {}/password is readable by others (mode 0644)", volume.display());
    assert!(run.stderr.contains(&warning), "{run}");
    assert!(!run.stderr.contains("ca.pem is readable"), "certificates are public: {run}");
}
