//! The real drivers the tests use as oracles, built once per test binary from `examples/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::run_ok;

/// The Go app on pgx (`examples/pgx`), built with Debian's Go and pgx v4 (`scripts/setup`
/// installs them), offline: GOPATH mode over `/usr/share/gocode`.
pub fn pgx_app() -> &'static Path {
    static APP: OnceLock<PathBuf> = OnceLock::new();
    APP.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go");
        let app = cache.join("pgx-app");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pgx");
        run_ok(
            Command::new("go")
                .args(["build", "-o"])
                .arg(&app)
                .arg(".")
                .current_dir(&source)
                .env("GO111MODULE", "off")
                .env("GOPATH", format!("{}:/usr/share/gocode", cache.join("gopath").display()))
                .env("GOCACHE", cache.join("build")),
        );
        app
    })
}

/// The Java app on pgjdbc (`examples/pgjdbc`), compiled once against Debian's
/// `libpostgresql-jdbc-java`; returns the command that runs it.
pub fn pgjdbc_app() -> Command {
    static CLASSES: OnceLock<PathBuf> = OnceLock::new();
    const JAR: &str = "/usr/share/java/postgresql.jar";
    let classes = CLASSES.get_or_init(|| {
        let classes = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pgjdbc-app");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pgjdbc/App.java");
        run_ok(Command::new("javac").args(["-cp", JAR, "-d"]).arg(&classes).arg(source));
        classes
    });
    let mut c = Command::new("java");
    c.args(["-XX:TieredStopAtLevel=1", "-Xshare:auto", "-cp"]).arg(format!("{}:{JAR}", classes.display())).arg("App");
    c
}

/// The Node app on node-postgres (`examples/node-postgres`, its modules installed by
/// `scripts/setup` with `npm ci`); returns the command that runs it.
pub fn node_app() -> Command {
    let mut c = Command::new("node");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-postgres/app.js"));
    c
}

/// The Rust app on tokio-postgres + tokio-postgres-rustls (`examples/rustls`), which
/// `cargo test` builds with the tests (scripts/test runs the whole workspace's).
pub fn rustls_app() -> Command {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/tests-… → target/<profile>/examples/rustls-app
    let app = exe.parent().and_then(Path::parent).unwrap().join("examples/rustls-app");
    assert!(app.exists(), "{} is built by `cargo test` (or `cargo build --example rustls-app`)", app.display());
    Command::new(app)
}

/// The Python app on asyncpg (`examples/asyncpg`), run by the venv's Python, where
/// `scripts/setup` installs asyncpg.
pub fn asyncpg_app() -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = Command::new(root.join(".venv/bin/python"));
    c.arg(root.join("examples/asyncpg/app.py"));
    c
}
