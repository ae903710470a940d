//! Test harness: real services, started once per test binary, isolated per test by names.
//!
//! - PostgreSQL from its server binaries (`pg_config --bindir`), in a temp dir, as the
//!   `postgres` OS user when the tests run as root; certificates made with the openssl CLI at
//!   run time; `ssl = on`, `password_encryption = scram-sha-256`, only `hostssl` lines for TCP.
//! - OpenBao in dev mode (`bao` from the repo's `.venv`, or `$LAUNCHER_TEST_BAO`, or PATH).
//! - moto for AWS Secrets Manager (`moto_server` from the `.venv`, or `$LAUNCHER_TEST_MOTO`).
//!
//! Every service is started through `setpriv --pdeathsig` from a thread that lives as long as
//! the test binary, so the kernel stops them when the binary exits, however it exits.

#![allow(dead_code, reason = "each test uses a different part of the harness")]

pub mod bao;
pub mod certs;
pub mod drivers;
pub mod fixture;
pub mod moto;
pub mod pg;
pub mod tap;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub use bao::Bao;
pub use certs::Certs;
pub use fixture::Fixture;
pub use moto::Moto;
pub use pg::Pg;

/// Everything the tests share.
pub struct Services {
    pub root: PathBuf,
    pub certs: Certs,
    pub pg: Pg,
    pub bao: Bao,
    pub moto: Moto,
}

static SERVICES: OnceLock<Services> = OnceLock::new();

/// The shared services, started on first use.
pub fn services() -> &'static Services {
    SERVICES.get_or_init(|| on_keeper_thread(start))
}

/// Runs `f` on a thread that then lives as long as the test binary, and returns its result.
/// Services shared between tests must be spawned this way: `PR_SET_PDEATHSIG` fires when the
/// *thread* that forked them ends, and a test's thread ends with the test.
pub fn on_keeper_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        loop {
            std::thread::park();
        }
    });
    match rx.recv().expect("keeper thread") {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn start() -> Services {
    let root = scratch_dir("launcher-test");
    // moto takes the longest to answer: start it first and wait for it last.
    let moto = Moto::spawn(&root.join("moto"));
    let certs = Certs::generate(&root.join("certs"));
    let bao = Bao::start(&root.join("bao"));
    let pg = Pg::start(&root.join("pg"), &certs, true);
    moto.wait_ready();
    Services { root, certs, pg, bao, moto }
}

/// A fresh directory under the temp dir, 0711 so that the `postgres` user can pass through.
/// Leftovers of earlier runs whose process is gone are removed first.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(&format!("{prefix}-")).and_then(|p| p.parse::<u32>().ok())
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = tmp.join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// A name unique in this test binary: `prefix_N`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A password no output may contain. Has characters that need quoting in a shell and a URL.
pub fn canary() -> String {
    format!("canary-{}-{}:@/%'\"pw", std::process::id(), unique("c"))
}

/// A free TCP port on 127.0.0.1 (and the next one, for OpenBao's cluster listener).
pub fn free_port_pair() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 65000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether the tests run as root (then the servers run as `postgres`).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command started through `setpriv --pdeathsig SIGNAL`, so it dies with the test binary.
pub fn with_pdeathsig(signal: &str, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--pdeathsig={signal}")).arg("--").arg(program);
    c
}

/// A child process stopped (and reaped) when the value is dropped: for services one test starts.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The launcher binary (cargo's, or `$LAUNCHER_TEST_BIN`: bench/failover runs the release build),
/// with an environment holding nothing but what the test gives it.
pub fn launcher(home: &Path) -> Command {
    let bin = std::env::var_os("LAUNCHER_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_launcher").into());
    let mut c = Command::new(bin);
    c.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("HOME", home).env("TMPDIR", home);
    c
}

/// What a finished launcher run produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(cmd: &mut Command) -> Self {
        let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts that `secret` appears nowhere in the output.
    pub fn assert_no_leak(&self, secret: &str) -> &Self {
        assert!(!self.stdout.contains(secret) && !self.stderr.contains(secret), "secret leaked into output:\n{self}");
        self
    }

    /// Asserts the exit code and a piece of stderr.
    pub fn assert_fails(&self, code: i32, stderr_part: &str) -> &Self {
        assert_eq!(self.code, code, "wrong exit code:\n{self}");
        assert!(self.stderr.contains(stderr_part), "stderr lacks {stderr_part:?}:\n{self}");
        self
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "launcher failed:\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A per-test home directory (no ~/.vault-token, no ~/.postgresql unless the test makes them).
pub fn home(name: &str) -> PathBuf {
    let dir = services().root.join("homes").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
