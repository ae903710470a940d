//! Keeping secrets out of core dumps and away from ptrace-by-the-same-user while the launcher
//! holds them: `PR_SET_DUMPABLE=0` and a soft `RLIMIT_CORE` of 0.
//!
//! Dumpability is reset by `execve` for the app; resource limits are not, so the app's original
//! core limit is put back just before the exec ([`restore_for_exec`]).

use std::sync::OnceLock;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

static ORIGINAL_CORE_LIMIT: OnceLock<(u64, u64)> = OnceLock::new();

/// Applies both protections. Failures are reported, not fatal: a kernel without them is no
/// reason to refuse to start the app.
pub fn apply() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        crate::log::warn(format!("could not make the process non-dumpable: {e}"));
    }
    match getrlimit(Resource::RLIMIT_CORE) {
        Ok((soft, hard)) => {
            let _ = ORIGINAL_CORE_LIMIT.set((soft, hard));
            if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, hard) {
                crate::log::warn(format!("could not lower the core-dump size limit: {e}"));
            }
        }
        Err(e) => crate::log::warn(format!("could not read the core-dump size limit: {e}")),
    }
}

/// Puts the core-dump limit the launcher was started with back, for the app.
pub fn restore_for_exec() {
    if let Some((soft, hard)) = ORIGINAL_CORE_LIMIT.get() {
        let _ = setrlimit(Resource::RLIMIT_CORE, *soft, *hard);
    }
}
