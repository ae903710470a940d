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

    /// As [`SecretSource::fetch`], with the lease the store attached to the secret, if any
    /// (dynamic database credentials). Sources without leases keep this default.
    fn fetch_leased(
        &self,
        reference: &Reference,
    ) -> impl Future<Output = Result<(Document, Option<Lease>), SourceError>> + Send
    where
        Self: Sync,
    {
        async move { Ok((self.fetch(reference).await?, None)) }
    }
}

/// A lease on a secret: after `ttl` the store revokes it (a dynamic database user is dropped).
/// The id is not a secret (it names the lease, it does not grant it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The store's lease id, e.g. `database/creds/app/AbC…`.
    pub id: String,
    /// Time to live from when it was read.
    pub ttl: std::time::Duration,
    /// Whether the store would renew it (the launcher cannot, once it has exec'd).
    pub renewable: bool,
    /// The TTL of the token the lease hangs on, when that token expires: revoking or expiring
    /// the token revokes the lease with it.
    pub token_ttl: Option<std::time::Duration>,
}

impl Lease {
    /// When the secret stops working: the earlier of the lease's and its token's expiry.
    #[must_use]
    pub fn effective_ttl(&self) -> std::time::Duration {
        self.token_ttl.map_or(self.ttl, |t| t.min(self.ttl))
    }
}
