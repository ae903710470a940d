//! The launcher's few log lines, on stderr. They carry references, field names and TLS facts,
//! never a secret value: callers pass only those.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: informational lines are dropped, warnings are kept.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// One informational line.
pub fn info(message: impl std::fmt::Display) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("launcher: {message}");
    }
}

/// One warning line.
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("launcher: warning: {message}");
}
