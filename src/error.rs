//! The launcher's own failures and the exit code each maps to (documented in the README).
//! The app's exit status is never touched: after `exec` the launcher no longer exists.

use std::fmt;

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
    /// 75: still unreachable when `--wait` ran out.
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
