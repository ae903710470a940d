//! What can go wrong while reading a secret, classified by who has to act, so that the binary
//! can map it to a documented exit code. Messages name references and fields, never values.

use crate::Reference;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The class of a failure: decides the exit code and whether waiting could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store could not be reached (network, DNS, server down).
    Unreachable,
    /// The store's TLS certificate was refused: waiting will not change it.
    TlsRefused,
    /// The store refused the caller (403, bad token).
    Denied,
    /// The secret is not there.
    NotFound,
    /// The secret is there but its content is not what was asked for.
    BadContent,
    /// The launcher's configuration for this source is wrong.
    Config,
    /// A local file could not be read.
    Io,
}

/// A failure of one source on one reference.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// See [`ErrorKind::Unreachable`].
    #[error("{reference}: cannot reach {store}")]
    Unreachable {
        /// What was being read.
        reference: String,
        /// Which store, e.g. the Vault address.
        store: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// The store is rate-limiting (HTTP 429): waiting helps, so it is of the
    /// [`ErrorKind::Unreachable`] class, retried under `--wait`.
    #[error("{reference}: {store} is rate-limiting requests (HTTP 429{})", retry_after_suffix(.retry_after.as_ref()))]
    Throttled {
        /// What was being read.
        reference: String,
        /// Which store.
        store: String,
        /// When the store said to come back (`Retry-After`), if it said.
        retry_after: Option<std::time::Duration>,
    },
    /// See [`ErrorKind::TlsRefused`].
    #[error("{reference}: {store} presented a certificate that is not trusted: {detail}")]
    TlsRefused {
        /// What was being read.
        reference: String,
        /// Which store.
        store: String,
        /// Why it was refused, and by whom it was issued when that is known.
        detail: String,
    },
    /// See [`ErrorKind::Denied`].
    #[error("{reference}: permission denied by {store}{}", detail_suffix(.detail))]
    Denied {
        /// What was being read.
        reference: String,
        /// Which store.
        store: String,
        /// The store's own words, if it gave any (never a secret value).
        detail: String,
    },
    /// See [`ErrorKind::NotFound`].
    #[error("{reference}: no secret at this path")]
    NotFound {
        /// What was being read.
        reference: String,
    },
    /// A named field is absent.
    #[error("{reference}: field \"{field}\" is missing (fields present: {present})")]
    MissingField {
        /// The document read.
        reference: String,
        /// The field asked for.
        field: String,
        /// The names of the fields that are there.
        present: String,
    },
    /// See [`ErrorKind::BadContent`].
    #[error("{reference}: {problem}")]
    BadContent {
        /// What was being read (with its field when one is at fault).
        reference: String,
        /// What is wrong, in words that carry no value.
        problem: String,
    },
    /// See [`ErrorKind::Config`].
    #[error("{reference}: {problem}")]
    Config {
        /// What was being read, or the setting at fault.
        reference: String,
        /// What is wrong.
        problem: String,
    },
    /// See [`ErrorKind::Io`].
    #[error("{reference}: cannot read {path}")]
    Io {
        /// What was being read.
        reference: String,
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
}

impl SourceError {
    /// The class of this failure.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unreachable { .. } | Self::Throttled { .. } => ErrorKind::Unreachable,
            Self::TlsRefused { .. } => ErrorKind::TlsRefused,
            Self::Denied { .. } => ErrorKind::Denied,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::MissingField { .. } | Self::BadContent { .. } => ErrorKind::BadContent,
            Self::Config { .. } => ErrorKind::Config,
            Self::Io { .. } => ErrorKind::Io,
        }
    }

    /// For a rate-limited request, the least time to wait before the next: what the store's
    /// `Retry-After` said, else one second (Vault's quotas count whole-second intervals).
    #[must_use]
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Throttled { retry_after, .. } => {
                Some(retry_after.unwrap_or_default().max(std::time::Duration::from_secs(1)))
            }
            _ => None,
        }
    }

    /// A [`SourceError::BadContent`] about one reference.
    #[must_use]
    pub fn bad_content(reference: &Reference, problem: impl Into<String>) -> Self {
        Self::BadContent { reference: reference.to_string(), problem: problem.into() }
    }
}

/// An error and its causes on one line, each cause once ("error sending request: connection
/// refused"): the outer layers of transport errors say little, the inner ones say what to fix.
#[must_use]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut cur = error.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn retry_after_suffix(retry_after: Option<&std::time::Duration>) -> String {
    match retry_after {
        Some(d) => format!(", asked to retry after {}s", d.as_secs()),
        None => String::new(),
    }
}
