//! Becoming the app: `execve` through std (which restores the signal mask and `SIGPIPE`), same
//! PID, so signals reach the app directly and its exit status is the container's or unit's.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::check::Checked;
use crate::env::ChildEnv;
use crate::error::{Error, Exit};

/// Replaces this process with `program`. Only returns on failure. Requires proof that the
/// connection check passed.
#[must_use]
pub fn exec(program: &[OsString], env: &ChildEnv, _checked: &Checked) -> Error {
    let Some((name, args)) = program.split_first() else {
        return Error::msg(Exit::Usage, "no program given after --");
    };
    crate::harden::restore_for_exec();
    let error = Command::new(name).args(args).env_clear().envs(env.pairs()).exec();
    let shown = name.to_string_lossy();
    match error.kind() {
        std::io::ErrorKind::NotFound => Error::msg(Exit::NotFound, format!("{shown}: command not found")),
        std::io::ErrorKind::PermissionDenied => Error::msg(Exit::NotExecutable, format!("{shown}: permission denied")),
        _ => Error::new(Exit::NotExecutable, error).context(format!("{shown}: cannot execute")),
    }
}
