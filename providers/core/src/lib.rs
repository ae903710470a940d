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

/// A place secrets come from. Only [`SecretSource::fetch`] is required; the rest are the
/// lifecycle hooks a store that issues things (logins, leases) implements, with no-op defaults.
///
/// Implementations move every secret value they receive into a [`SecretString`] or
/// [`SecretBytes`] at once, and never put a value into an error or a log line.
pub trait SecretSource {
    /// The reference schemes this source reads.
    fn schemes(&self) -> &'static [Scheme];

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

    /// Called once every secret is read and the launch goes on: what the source logged in with
    /// can go, unless `lease_held` (a lease hangs on it). Returns what it did, for the log.
    fn finish(&self, lease_held: bool) -> impl Future<Output = Result<Vec<String>, SourceError>> + Send {
        let _ = lease_held;
        async { Ok(Vec::new()) }
    }

    /// Extends `lease` (`--supervise`): returns its TTL from now, shorter than the lease's own
    /// when the store's maximum is near. Only sources that give leases are asked.
    fn renew_lease(&self, lease: &Lease) -> impl Future<Output = Result<std::time::Duration, SourceError>> + Send {
        let problem = format!("lease {}: this source does not renew leases", lease.id);
        async move { Err(SourceError::Config { reference: "renewal".into(), problem }) }
    }

    /// Extends the token the source reads with (`--supervise`): its TTL from now, or `None`
    /// when it has none that expires (a root token, a source without tokens).
    fn renew_login(&self) -> impl Future<Output = Result<Option<std::time::Duration>, SourceError>> + Send {
        async { Ok(None) }
    }

    /// Called when a launch fails, is stopped, or will not use what it was issued (a finished
    /// `launcher check`): revoke everything this launch was issued.
    fn abandon(&self) -> impl Future<Output = Abandoned> + Send {
        async { Abandoned::default() }
    }
}

/// What [`SecretSource::abandon`] did, in words for the log (names and ids, never values).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Abandoned {
    /// What was revoked, e.g. "the Vault login token and any lease issued under it".
    pub revoked: Vec<String>,
    /// What could not be, and what that means for the user.
    pub failed: Vec<String>,
}

/// A source that can issue a client certificate (a PKI), for `--client-cert`.
pub trait IssuesClientCerts {
    /// Issues a certificate for `common_name` from what `reference` names.
    fn issue_client_cert(
        &self,
        reference: &Reference,
        common_name: &str,
    ) -> impl Future<Output = Result<IssuedCert, SourceError>> + Send;
}

/// A certificate issued in one call, so that key and certificate match.
pub struct IssuedCert {
    /// The certificate, PEM (public).
    pub certificate: String,
    /// Its private key, PEM.
    pub private_key: SecretString,
    /// Its serial number (logged).
    pub serial_number: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").field("serial_number", &self.serial_number).finish_non_exhaustive()
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
