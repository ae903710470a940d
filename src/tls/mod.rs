//! The TLS side of the connection check: libpq's own stack. The session runs on the system's
//! OpenSSL, set up as libpq's `initialize_SSL` sets it up ([`chain`]: the root file or the
//! system's roots, CRLs with libpq's flags, `SSL_VERIFY_PEER`, openssl.cnf's security level;
//! [`stream`]: the protocol range, the client certificate, SNI by libpq's rule), so the chain's
//! verdict, the handshake's signatures, the key exchange and the cipher suites are OpenSSL's, as
//! they are for libpq. Then, as libpq does after the handshake, the host name is checked by
//! libpq's own rules, ported (`hostname.rs`). The name checked is the host the app connects to
//! (`PGHOST`), even when `PGHOSTADDR` says where to connect.

pub(crate) mod binding;
pub mod chain;
mod hostname;
pub mod info;
pub mod peer;
pub mod stream;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

pub use chain::{Chain, ChainError, Context, Loading, Pending};
pub use info::CertInfo;
pub use stream::{MakeConnect, Negotiated};

/// Why the check refused the server, in libpq's words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The chain did not verify.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The names did not match the host.
    #[error("{0}")]
    Name(String),
}

/// What the session saw: the server's chain, for the report, and a refusal if any.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The certificates: as the server sent them, then, once verified, the chain OpenSSL
    /// built, leaf to trust anchor.
    pub chain: Vec<CertInfo>,
    /// The chain the server sent, leaf first, for the drivers' judges.
    pub served: Vec<openssl::x509::X509>,
    /// Set when the check said no.
    pub refusal: Option<Refusal>,
    /// When the TLS handshake began (the TCP connect and the SSLRequest done), when the
    /// server's certificate arrived, and when the handshake was done: for `-v`'s account of
    /// where the check's time goes, in round trips.
    pub verified: Option<(Instant, Instant, Instant)>,
    /// The `tls-server-end-point` channel binding data of the accepted certificate, or why
    /// libpq could not make it.
    pub end_point: Option<Result<Vec<u8>, String>>,
    /// The protocol and cipher the handshake settled on.
    pub negotiated: Option<Negotiated>,
    /// The SASL exchange as seen on the wire, when the server asked for one.
    pub sasl: Option<Sasl>,
}

/// What the server offered in its SASL request, and what the client answered with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sasl {
    /// SCRAM-SHA-256-PLUS was among the mechanisms (PostgreSQL over TLS; not PgBouncer 1.x).
    pub offered_plus: bool,
    /// The client's SASLInitialResponse named SCRAM-SHA-256-PLUS.
    pub chose_plus: bool,
}

/// One connection's TLS settings and what its session saw. The trust store may still be
/// loading on another thread when the connection starts: it is first needed when the TLS
/// handshake starts, after the SSLRequest round trip.
#[derive(Debug)]
pub struct Session {
    trust: Arc<Trust>,
    host: String,
    seen: Mutex<Seen>,
}

/// The trust store, loaded once and shared by every attempt of a host list.
#[derive(Debug)]
struct Trust {
    loading: Mutex<Option<Loading>>,
    chain: OnceLock<Result<Chain, ChainError>>,
}

impl Session {
    /// A session for `host` trusting what `chain` will trust once loaded.
    #[must_use]
    pub fn new(chain: Loading, host: String) -> Self {
        let trust = Arc::new(Trust { loading: Mutex::new(Some(chain)), chain: OnceLock::new() });
        Self { trust, host, seen: Mutex::new(Seen::default()) }
    }

    /// A fresh session for another host of the list, with the same trust store.
    #[must_use]
    pub fn for_host(&self, host: &str) -> Self {
        Self { trust: self.trust.clone(), host: host.to_owned(), seen: Mutex::new(Seen::default()) }
    }

    fn chain(&self) -> Result<&Chain, ChainError> {
        let trust = &*self.trust;
        trust
            .chain
            .get_or_init(|| {
                let loading = trust.loading.lock().unwrap_or_else(PoisonError::into_inner).take();
                loading
                    .map_or_else(|| Err(ChainError::Internal("the trust store was not loaded".into())), Loading::wait)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the trust store has a CRL (and so revocation was checked); false before the
    /// handshake started.
    pub fn crl_checked(&self) -> bool {
        self.trust.chain.get().is_some_and(|c| c.as_ref().is_ok_and(Chain::crl_checked))
    }

    /// What the last handshake presented, and the refusal if there was one.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The channel binding data of the accepted certificate, when libpq could make it too.
    pub fn end_point(&self) -> Option<Vec<u8>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).end_point.clone().and_then(Result::ok)
    }

    /// Records the mechanisms of the server's SASL request.
    pub fn sasl_offered(&self, plus: bool) {
        self.update(|seen| seen.sasl = Some(Sasl { offered_plus: plus, chose_plus: false }));
    }

    /// Records the mechanism of the client's SASLInitialResponse.
    pub fn sasl_chosen(&self, plus: bool) {
        self.update(|seen| {
            if let Some(sasl) = &mut seen.sasl {
                sasl.chose_plus = plus;
            }
        });
    }

    /// The host name, as libpq checks it after the handshake.
    fn check_name(&self, leaf: &openssl::x509::X509Ref) -> Result<(), Refusal> {
        hostname::verify(&self.host, &info::peer_names(leaf)).map_err(|e| Refusal::Name(e.to_string()))
    }
}

/// Whether libpq sends `host` as SNI: unless it is made of digits and dots only, or has a
/// colon (libpq's test for an IP address here, not `inet_aton`'s).
#[must_use]
pub fn sends_sni(host: &str) -> bool {
    !host.is_empty() && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !host.contains(':')
}

/// A client certificate chain and its key, read from the files libpq reads, for OpenSSL to
/// present and sign with.
pub struct ClientIdentity {
    chain: Vec<openssl::x509::X509>,
    key: openssl::pkey::PKey<openssl::pkey::Private>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").field("certificates", &self.chain.len()).finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// Reads PEM files (any key type OpenSSL reads), and checks that they belong together, as
    /// OpenSSL does when libpq loads the key (with libpq's words for a mismatch).
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, String> {
        Self::with_key(&Self::read_chain(cert)?, key)
    }

    /// The certificate chain, read first as libpq reads it (before it looks at the key).
    pub fn read_chain(cert: &std::path::Path) -> Result<Vec<openssl::x509::X509>, String> {
        let unreadable = |why: String| format!("could not read certificate file \"{}\": {why}", cert.display());
        let pem = std::fs::read(cert).map_err(|e| unreadable(e.to_string()))?;
        openssl::x509::X509::stack_from_pem(&pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| unreadable("no PEM certificate in it".to_owned()))
    }

    /// `certs` with the key in `key`, which must be the first certificate's.
    pub fn with_key(certs: &[openssl::x509::X509], key: &std::path::Path) -> Result<Self, String> {
        let chain = certs.to_vec();
        let key_pem =
            launcher_core::SecretBytes::new(std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?);
        let private = openssl::pkey::PKey::private_key_from_pem(key_pem.expose()).map_err(|e| {
            let reason = e.errors().first().and_then(openssl::error::Error::reason).unwrap_or("not a PEM private key");
            format!("could not load private key file \"{}\": {reason}", key.display())
        })?;
        let matches = certs.first().and_then(|c| c.public_key().ok()).is_some_and(|public| public.public_eq(&private));
        if !matches {
            return Err(format!("could not load private key file \"{}\": key values mismatch", key.display()));
        }
        Ok(Self { chain, key: private })
    }
}
