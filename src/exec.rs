//! Becoming the app: `execve` through std (which restores the signal mask and `SIGPIPE`), same
//! PID, so signals reach the app directly and its exit status is the container's or unit's.
//! The program is looked up before anything is fetched ([`resolve`]), as `execvp` will look it
//! up, so that a typo costs no login and no lease. With `--supervise` the program is started as
//! a child instead ([`spawn`]), with the same environment and the same proof required.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::check::Checked;
use crate::env::ChildEnv;
use crate::error::{Error, Exit};
use crate::plan::ParentEnv;

/// glibc's `execvp` search path when `PATH` is unset.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Finds `program[0]` as `execvp` will (a name with a slash as is, else each `PATH` entry):
/// 127 when nothing is there, 126 when only something that cannot be executed is.
pub fn resolve(program: &[OsString], env: &ParentEnv) -> Result<(), Error> {
    let Some(name) = program.first() else {
        return Err(Error::msg(Exit::Usage, "no program given after --"));
    };
    let candidates: Vec<PathBuf> = if name.as_encoded_bytes().contains(&b'/') {
        vec![PathBuf::from(name)]
    } else {
        let path = env.iter().find(|(k, _)| *k == OsStr::new("PATH")).map_or(DEFAULT_PATH.as_ref(), |(_, v)| v);
        std::env::split_paths(path)
            .map(|dir| if dir.as_os_str().is_empty() { Path::new(".").join(name) } else { dir.join(name) })
            .collect()
    };
    let mut refused = false;
    for candidate in candidates {
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(()),
            Ok(_) => refused = true,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => refused = true,
            Err(_) => {}
        }
    }
    Err(failure(name, if refused { std::io::ErrorKind::PermissionDenied } else { std::io::ErrorKind::NotFound }))
}

fn failure(name: &OsStr, kind: std::io::ErrorKind) -> Error {
    let shown = name.to_string_lossy();
    match kind {
        std::io::ErrorKind::NotFound => Error::msg(Exit::NotFound, format!("{shown}: command not found")),
        _ => Error::msg(Exit::NotExecutable, format!("{shown}: permission denied")),
    }
}

/// Replaces this process with `program`. Only returns on failure. Requires proof that the
/// connection check passed.
#[must_use]
pub fn exec(program: &[OsString], env: &ChildEnv, _checked: &Checked) -> Error {
    let Some((name, args)) = program.split_first() else {
        return Error::msg(Exit::Usage, "no program given after --");
    };
    crate::harden::restore_for_exec();
    let error = Command::new(name).args(args).env_clear().envs(env.pairs()).exec();
    match error.kind() {
        kind @ (std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied) => failure(name, kind),
        _ => Error::new(Exit::NotExecutable, error).context(format!("{}: cannot execute", name.to_string_lossy())),
    }
}

/// Starts `program` as a child with `env` (`--supervise`). Requires proof that the connection
/// check passed. std resets the signal mask and `SIGPIPE` in the child, as for [`exec`]; the
/// launcher's caught signals go back to their defaults with the `execve`.
/// With `own_group`, the child leads a process group of its own (for a terminal to be handed to).
pub fn spawn(
    program: &[OsString],
    env: &ChildEnv,
    _checked: &Checked,
    own_group: bool,
) -> Result<nix::unistd::Pid, Error> {
    let Some((name, args)) = program.split_first() else {
        return Err(Error::msg(Exit::Usage, "no program given after --"));
    };
    crate::harden::restore_for_exec();
    let mut command = Command::new(name);
    command.args(args).env_clear().envs(env.pairs());
    if own_group {
        command.process_group(0);
    }
    let spawned = command.spawn();
    crate::harden::lower_core_limit();
    match spawned {
        // The handle is let go without waiting: the supervisor reaps every child itself
        // (`waitpid(-1)`), the app included.
        Ok(child) => Ok(nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a PID fits an i32"))),
        Err(e) => match e.kind() {
            kind @ (std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied) => Err(failure(name, kind)),
            _ => Err(Error::new(Exit::NotExecutable, e).context(format!("{}: cannot execute", name.to_string_lossy()))),
        },
    }
}
