//! The launcher's own failures and the exit code each maps to (documented in the README).
//! The app's exit status is never touched: after `exec` the launcher no longer exists.

use std::fmt;
use std::fmt::Write as _;

use launcher_core::{ErrorKind, SourceError};

/// Exit codes, sysexits-style, plus the shells' 126/127 for exec failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// 64: the command line is wrong.
    Usage,
    /// 65: a secret's content is not usable (missing field, not a port, not PEM).
    DataErr,
    /// 69: the secret store or the database cannot be reached.
    Unavailable,
    /// 70: a bug.
    Software,
    /// 73: a runtime file or directory could not be created safely.
    CantCreate,
    /// 75: still unreachable when `--wait` ran out; or, with `--supervise --on-change exit`, the
    /// credentials changed and the app was stopped for an orchestrator to restart.
    TempFail,
    /// 76: a TLS certificate was refused: the database server's (what libpq would refuse) or the
    /// secret store's.
    Tls,
    /// 77: permission denied by the store, or database authentication failed.
    NoPerm,
    /// 78: configuration: a setting is missing or wrong, a secret path does not exist.
    Config,
    /// 129: SIGHUP arrived before the app started; what the launch was issued is revoked.
    HungUp,
    /// 130: SIGINT (Ctrl-C), likewise.
    Interrupted,
    /// 143: SIGTERM (`docker stop`, Kubernetes, systemd), likewise.
    Terminated,
    /// 126: the command exists but cannot be executed.
    NotExecutable,
    /// 127: the command was not found.
    NotFound,
}

impl Exit {
    /// Every code, in order: `--help`, the README's table and [`Exit::code`] are checked
    /// against this list.
    pub const ALL: [Exit; 14] = [
        Self::Usage,
        Self::DataErr,
        Self::Unavailable,
        Self::Software,
        Self::CantCreate,
        Self::TempFail,
        Self::Tls,
        Self::NoPerm,
        Self::Config,
        Self::NotExecutable,
        Self::NotFound,
        Self::HungUp,
        Self::Interrupted,
        Self::Terminated,
    ];

    /// What the code means, in a few words (for `--help`; the README says more).
    #[must_use]
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::DataErr => "bad secret content",
            Self::Unavailable => "store or database unreachable",
            Self::Software => "internal error",
            Self::CantCreate => "runtime file or directory",
            Self::TempFail => "still unreachable when --wait ran out; --on-change exit: credentials changed",
            Self::Tls => "TLS certificate refused",
            Self::NoPerm => "permission or authentication denied",
            Self::Config => "configuration",
            Self::NotExecutable => "command not executable",
            Self::NotFound => "command not found",
            Self::HungUp => "SIGHUP before the app started",
            Self::Interrupted => "SIGINT before the app started",
            Self::Terminated => "SIGTERM before the app started",
        }
    }

    /// The exit codes, as `--help` lists them.
    #[must_use]
    pub fn help() -> String {
        Self::ALL.iter().fold("Exit codes (otherwise the app's own):".to_owned(), |mut out, e| {
            let _ = write!(out, "\n  {:<4}{}", e.code(), e.meaning());
            out
        })
    }

    /// The process exit status.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Usage => 64,
            Self::DataErr => 65,
            Self::Unavailable => 69,
            Self::Software => 70,
            Self::CantCreate => 73,
            Self::TempFail => 75,
            Self::Tls => 76,
            Self::NoPerm => 77,
            Self::Config => 78,
            Self::HungUp => 129,
            Self::Interrupted => 130,
            Self::Terminated => 143,
            Self::NotExecutable => 126,
            Self::NotFound => 127,
        }
    }

    /// The verdict `launcher check --output json` reports for a failure of this class.
    #[must_use]
    pub fn verdict(self) -> &'static str {
        match self {
            Self::Tls => "refused",
            Self::Unavailable | Self::TempFail => "unreachable",
            Self::NoPerm => "denied",
            Self::DataErr => "bad-secret",
            Self::Usage | Self::Config => "misconfigured",
            Self::CantCreate => "file-error",
            Self::HungUp | Self::Interrupted | Self::Terminated => "interrupted",
            Self::NotExecutable | Self::NotFound => "not-executable",
            Self::Software => "internal-error",
        }
    }
}

/// A failure with the exit code it deserves. `Display` prints the whole cause chain on one line.
pub struct Error {
    exit: Exit,
    inner: anyhow::Error,
}

impl Error {
    /// A failure of class `exit`.
    pub fn new(exit: Exit, inner: impl Into<anyhow::Error>) -> Self {
        Self { exit, inner: inner.into() }
    }

    /// A failure described by a message alone.
    pub fn msg(exit: Exit, message: impl fmt::Display + fmt::Debug + Send + Sync + 'static) -> Self {
        Self { exit, inner: anyhow::Error::msg(message) }
    }

    /// The exit code.
    #[must_use]
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// The same failure with another exit code.
    #[must_use]
    pub fn with_exit(self, exit: Exit) -> Self {
        Self { exit, inner: self.inner }
    }

    /// Adds context in front of the message, keeping the exit code.
    #[must_use]
    pub fn context(self, context: impl fmt::Display + Send + Sync + 'static) -> Self {
        Self { exit: self.exit, inner: self.inner.context(context) }
    }

    /// For a store that throttled the request, the least time to stay away before the next.
    #[must_use]
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.inner.chain().find_map(|e| e.downcast_ref::<SourceError>()).and_then(SourceError::retry_after)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.inner)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {:#})", self.exit, self.inner)
    }
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        let exit = match e.kind() {
            ErrorKind::Unreachable => Exit::Unavailable,
            ErrorKind::TlsRefused => Exit::Tls,
            ErrorKind::Denied => Exit::NoPerm,
            ErrorKind::BadContent => Exit::DataErr,
            ErrorKind::Io => Exit::CantCreate,
            // A wrong path is a configuration mistake, like any other wrong setting.
            _ => Exit::Config,
        };
        Self::new(exit, e)
    }
}

/// `result.exit(Exit::Config)?` attaches an exit code to any error.
pub trait ResultExt<T> {
    /// Classifies the error.
    fn exit(self, exit: Exit) -> Result<T, Error>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn exit(self, exit: Exit) -> Result<T, Error> {
        self.map_err(|e| Error::new(exit, e))
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn help_and_readme_list_every_exit_code_and_no_other() {
        let mut codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Exit::ALL.len(), "codes are distinct");
        let help = Exit::help();
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = readme.split("\n## Exit codes\n").nth(1).and_then(|s| s.split("\n## ").next()).unwrap();
        let mut listed: Vec<u8> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| ")?.split(" |").next())
            .flat_map(|cell| cell.split(", ").filter_map(|c| c.trim().parse::<u8>().ok()).collect::<Vec<_>>())
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, codes, "the README's exit-code table");
        for e in Exit::ALL {
            let line = format!("  {:<4}{}", e.code(), e.meaning());
            assert!(help.lines().any(|l| l == line), "--help lacks {}", e.code());
        }
    }
}
