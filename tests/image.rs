//! The container images `scripts/image` builds, run for real with podman against the test
//! services on the host's network: the launcher's own image (every source, and `vault,file`), and
//! an app image made from it as `examples/image/Dockerfile` makes one.
//!
//! They run when `LAUNCHER_IMAGE` names the launcher's image (`scripts/test` builds it and sets
//! it; then a missing image fails the tests); plain `cargo test` says they were skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{Fixture, Run, bao::ROOT_TOKEN, services};

/// The launcher's image with every source, and the one built with `FEATURES=vault,file`.
fn images() -> Option<[String; 2]> {
    let Ok(image) = std::env::var("LAUNCHER_IMAGE") else {
        eprintln!("skipped: LAUNCHER_IMAGE is not set (scripts/test builds the images and sets it)");
        return None;
    };
    let small = format!("{image}-vault-file");
    for name in [&image, &small] {
        let exists = podman().args(["image", "exists", name]).status().unwrap();
        assert!(exists.success(), "LAUNCHER_IMAGE is set but there is no image {name}: run scripts/image");
    }
    Some([image, small])
}

fn podman() -> Command {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/podman"))
}

/// `examples/image/Dockerfile` built on `launcher` (once per run; podman's layer cache keeps it).
fn app_image(launcher: &str) -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    const TAG: &str = "localhost/launcher-example-app:dev";
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/image");
        let run = Run::of(
            podman()
                .args(["build", "--quiet", "--pull=never", "--build-arg"])
                .arg(format!("LAUNCHER_IMAGE={launcher}"))
                .args(["--tag", TAG])
                .arg(&dir),
        );
        run.assert_ok();
    });
    TAG
}

/// A copy of `pem` that the image's user (10001) can read, in the test's home.
fn readable(f: &Fixture, pem: &Path, name: &str) -> String {
    let copy = f.home.join(name);
    std::fs::copy(pem, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    copy.display().to_string()
}

#[test]
fn the_images_run_the_launcher_as_their_non_root_user() {
    let Some(images) = images() else { return };
    for image in &images {
        let run = Run::of(podman().args(["run", "--rm", image, "--version"]));
        run.assert_ok();
        assert!(run.stdout.starts_with(&format!("launcher {}", env!("CARGO_PKG_VERSION"))), "{image}: {run}");
        let run = Run::of(podman().args(["run", "--rm", "--entrypoint", "id", image, "-u"]));
        assert_eq!(run.stdout.trim(), "10001", "{image}: {run}");
    }
    // Without the AWS SDK, an AWS reference is a clear usage error, not a crash.
    let run = Run::of(podman().args(["run", "--rm", &images[1], "--credentials", "aws-sm:app/db", "--", "true"]));
    run.assert_fails(78, "aws-sm:app/db: this launcher was built without the \"aws-sm\" source");
}

#[test]
fn the_images_check_verifies_the_database_and_refuses_another_ca() {
    let Some(images) = images() else { return };
    let s = services();
    let f = Fixture::new();
    let ca = readable(&f, &s.certs.ca, "ca.crt");
    let other = readable(&f, &s.certs.other_ca, "other.crt");
    for image in &images {
        for (root, code, words) in [(&ca, 0, "verdict:     ok"), (&other, 76, "certificate verify failed")] {
            let run = Run::of(
                podman()
                    .args(["run", "--rm", "--network", "host", "--read-only", "-v"])
                    .arg(format!("{root}:/ca.crt:ro"))
                    .args(["-e", "PGHOST=localhost", "-e", "PGDATABASE=postgres", "-e"])
                    .arg(format!("PGPORT={}", s.pg.port))
                    .arg("-e")
                    .arg(format!("PGUSER={}", f.role))
                    .args(["-e", "PGPASSWORD", "-e", "PGSSLROOTCERT=/ca.crt", image, "check"])
                    .env("PGPASSWORD", &f.password),
            );
            run.assert_no_leak(&f.password);
            assert_eq!(run.code, code, "{image} with {root}: {run}");
            assert!(run.stdout.contains(words) || run.stderr.contains(words), "{image} with {root}: {run}");
        }
    }
}

#[test]
fn an_app_image_launches_psql_over_verified_tls_as_its_user_and_exits_with_its_code() {
    let Some(images) = images() else { return };
    let app = app_image(&images[0]);
    let s = services();
    let f = Fixture::new();
    // A read-only root too: the launcher's files go to /dev/shm, which podman and Docker mount
    // writable in every container, or to a tmpfs named by XDG_RUNTIME_DIR.
    let variants: [(&[&str], &str); 3] = [
        (&[], "/dev/shm/launcher-"),
        (&["--read-only"], "/dev/shm/launcher-"),
        (&["--read-only", "--tmpfs", "/run/app:mode=1777", "-e", "XDG_RUNTIME_DIR=/run/app"], "/run/app/launcher-"),
    ];
    for (options, files) in variants {
        let mut cmd = podman();
        cmd.args(["run", "--rm", "--network", "host"]).args(options);
        cmd.args(["-e", "VAULT_ADDR", "-e", "VAULT_TOKEN", app, "--credentials", &f.credentials(), "--ca", &f.ca()])
            .args(["--", "psql", "-XAt", "-c", r"\! id -u", "-c", r"\! printenv PGSSLMODE PGSSLROOTCERT", "-c"])
            .arg("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .args(["-c", "select 1/0"])
            .env("VAULT_ADDR", &s.bao.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN);
        let run = Run::of(&mut cmd);
        run.assert_no_leak(&f.password);
        // psql's own exit code for a failed command, through the launcher's exec.
        assert_eq!(run.code, 1, "{options:?}: {run}");
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{options:?}: {run}");
        assert_eq!([lines[0], lines[1], lines[3]], ["10001", "verify-full", "t"], "{options:?}: {run}");
        assert!(lines[2].starts_with(files) && lines[2].ends_with("/root.crt"), "{options:?}: {run}");
        assert!(run.stderr.contains("division by zero"), "{options:?}: {run}");
        assert!(run.stderr.contains(&format!("connected to localhost:{} as {}", s.pg.port, f.role)), "{run}");
    }
}
