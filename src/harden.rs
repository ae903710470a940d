//! Keeping secrets out of core dumps and away from ptrace-by-the-same-user while the launcher
//! holds them: `PR_SET_DUMPABLE=0` and a soft `RLIMIT_CORE` of 0.
//!
//! Dumpability is reset by `execve` for the app; resource limits are not, so the app's original
//! core limit is put back just before the exec ([`restore_for_exec`]).
//!
//! A launcher that stays (`--supervise`) also locks what it holds against swap ([`lock_memory`]).

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

/// Locks the pages the process has now, and those of its present mappings as they are touched,
/// in memory (`mlockall(MCL_CURRENT | MCL_ONFAULT)`): what `--supervise` holds for renewal (the
/// Vault token) is never written to swap. Not `MCL_FUTURE`: under a low `RLIMIT_MEMLOCK` a later
/// allocation would fail and take the app's supervisor down. Says why when the kernel refuses
/// (without `CAP_IPC_LOCK` the whole mapped size must fit the limit); not fatal.
pub fn lock_memory() {
    let flags =
        nix::sys::mman::MlockAllFlags::MCL_CURRENT | nix::sys::mman::MlockAllFlags::from_bits_retain(libc::MCL_ONFAULT);
    match nix::sys::mman::mlockall(flags) {
        Ok(()) => crate::log::debug("memory locked against swap"),
        Err(e) => crate::log::warn(format!(
            "could not lock the supervisor's memory against swap ({e}): give it CAP_IPC_LOCK or a higher \
             RLIMIT_MEMLOCK (LimitMEMLOCK=, --ulimit memlock=), or run without swap"
        )),
    }
}

/// Sets the core-dump limit back to 0 after a child was started with the original one.
pub fn lower_core_limit() {
    if let Some((_, hard)) = ORIGINAL_CORE_LIMIT.get() {
        let _ = setrlimit(Resource::RLIMIT_CORE, 0, *hard);
    }
}

/// Puts the core-dump limit the launcher was started with back, for the app.
pub fn restore_for_exec() {
    if let Some((soft, hard)) = ORIGINAL_CORE_LIMIT.get() {
        let _ = setrlimit(Resource::RLIMIT_CORE, *soft, *hard);
    }
}
