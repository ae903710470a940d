//! The contract between the launcher and its secret sources.
//!
//! A source (Vault, a mounted file, later AWS Secrets Manager) turns a [`Reference`] into a
//! [`Document`]; everything after that (picking a field, reading database credentials out of a
//! set of fields) is shared here so that every source behaves the same way.
//!
//! Secret bytes only ever live in [`SecretString`] / [`SecretBytes`]: zeroized on drop, and
//! their `Debug` prints `<redacted>`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod db;
mod error;
mod reference;
mod secret;

pub use db::DbSecret;
pub use error::{ErrorKind, SourceError, error_chain};
pub use reference::{Reference, ReferenceError, Scheme};
pub use secret::{Document, Fields, SecretBytes, SecretString};

/// A place secrets come from.
///
/// Implementations move every secret value they receive into a [`SecretString`] or
/// [`SecretBytes`] at once, and never put a value into an error or a log line.
pub trait SecretSource {
    /// Reads the whole document the reference points at (the `#field` part is applied by the
    /// caller, through [`Document::select`]).
    fn fetch(&self, reference: &Reference) -> impl Future<Output = Result<Document, SourceError>> + Send;
}
