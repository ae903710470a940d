//! The TLS side of the connection check: a rustls certificate verifier that gives libpq's
//! `sslmode=verify-full` verdict.
//!
//! libpq decides in two steps, and so does [`LibpqVerifier`]: first the chain, by OpenSSL
//! against the root file and CRLs ([`chain`]); then the host name, by libpq's own rules
//! ([`hostname`]). The name checked is the host the app connects to (`PGHOST`), even when
//! `PGHOSTADDR` says where to connect, as libpq does.

pub mod chain;
mod handshake;
mod hostname;
pub mod info;
pub mod kx;
pub mod peer;
pub mod stream;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use chain::{Chain, ChainError, Context, Loading, Pending};
pub use info::CertInfo;
pub use stream::{MakeConnect, Negotiated};

/// Why the verifier refused the server, in libpq's words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The chain did not verify.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The names did not match the host.
    #[error("{0}")]
    Name(String),
}

/// What the verifier saw: the server's chain, for the report, and a refusal if any.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The certificates: as the server sent them while unverified, then the chain OpenSSL
    /// built, leaf to trust anchor.
    pub chain: Vec<CertInfo>,
    /// Set when the verifier said no.
    pub refusal: Option<Refusal>,
    /// When the server's certificate arrived, and when its verdict was given: for `-v`'s
    /// account of where the check's time goes.
    pub verified: Option<(Instant, Instant)>,
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

/// libpq's verify-full as a rustls verifier. One per connection: it knows the host to check and
/// records what it saw. The trust store it checks against may still be loading on another thread
/// when the connection starts: it is first needed when the server's certificate arrives.
#[derive(Debug)]
pub struct LibpqVerifier {
    loading: Mutex<Option<Loading>>,
    chain: OnceLock<Result<Chain, ChainError>>,
    host: String,
    seen: Mutex<Seen>,
}

impl LibpqVerifier {
    /// A verifier for `host` trusting what `chain` will trust once loaded.
    #[must_use]
    pub fn new(chain: Loading, host: String) -> Self {
        Self { loading: Mutex::new(Some(chain)), chain: OnceLock::new(), host, seen: Mutex::new(Seen::default()) }
    }

    fn chain(&self) -> Result<&Chain, ChainError> {
        self.chain
            .get_or_init(|| {
                let loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner).take();
                loading
                    .map_or_else(|| Err(ChainError::Internal("the trust store was not loaded".into())), Loading::wait)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the trust store has a CRL (and so revocation was checked); false before the
    /// server's certificate arrived.
    pub fn crl_checked(&self) -> bool {
        self.chain.get().is_some_and(|c| c.as_ref().is_ok_and(Chain::crl_checked))
    }

    /// What the last handshake presented, and the refusal if there was one.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The channel binding data of the accepted certificate, when libpq could make it too.
    pub fn end_point(&self) -> Option<Vec<u8>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).end_point.clone().and_then(Result::ok)
    }

    /// Records the mechanisms of the server's SASL request.
    pub fn sasl_offered(&self, plus: bool) {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).sasl =
            Some(Sasl { offered_plus: plus, chose_plus: false });
    }

    /// Records the mechanism of the client's SASLInitialResponse.
    pub fn sasl_chosen(&self, plus: bool) {
        if let Some(sasl) = &mut self.seen.lock().unwrap_or_else(PoisonError::into_inner).sasl {
            sasl.chose_plus = plus;
        }
    }

    /// Records what the finished handshake negotiated.
    pub fn negotiated(&self, negotiated: Negotiated) {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).negotiated = Some(negotiated);
    }

    fn judge(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<(), Refusal> {
        let leaf = info::parse(end_entity).ok_or(Refusal::Chain(ChainError::Unparsable))?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.chain = std::iter::once(info::cert_info(&leaf))
                .chain(intermediates.iter().filter_map(|d| info::parse(d)).map(|c| info::cert_info(&c)))
                .collect();
        }
        let others: Vec<&[u8]> = intermediates.iter().map(AsRef::as_ref).collect();
        let built = self.chain()?.verify(&leaf, &others)?;
        hostname::verify(&self.host, &info::peer_names(&leaf)).map_err(|e| Refusal::Name(e.to_string()))?;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.chain = built;
        seen.end_point = Some(stream::end_point(&leaf, end_entity));
        Ok(())
    }
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let arrived = Instant::now();
        let verdict = self.judge(end_entity, intermediates);
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).verified = Some((arrived, Instant::now()));
        match verdict {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(refusal) => {
                let error = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                    Arc::new(refusal.clone()),
                )));
                self.seen.lock().unwrap_or_else(PoisonError::into_inner).refusal = Some(refusal);
                Err(error)
            }
        }
    }

    // The handshake signature is checked by OpenSSL ([`handshake`]), against the certificate's
    // key as OpenSSL parsed it: rustls' own helpers parse the certificate with webpki, which
    // refuses X.509 v1 certificates that libpq accepts, and verify with ring, which refuses keys
    // that libpq accepts.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        handshake::offered()
    }
}

fn handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    // The certificate's SubjectPublicKeyInfo as it is written there (the chain verifier has
    // already had OpenSSL parse and accept it).
    let spki = info::spki(cert).ok_or_else(bad_key)?;
    match handshake::verify(dss.scheme, spki, message, dss.signature(), tls13) {
        Ok(()) => Ok(HandshakeSignatureValid::assertion()),
        Err(handshake::Invalid::WrongScheme) => {
            Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into())
        }
        Err(handshake::Invalid::BadKey) => Err(bad_key()),
        Err(handshake::Invalid::BadSignature) => {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))
        }
    }
}

fn bad_key() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
}

/// The name handed to rustls for SNI. libpq sends no SNI when the host is an IP address in any
/// notation `inet_aton` or `inet_pton` accept (`127.1`, `0x7f.0.0.1`), which rustls would refuse
/// as a DNS name: such hosts become their canonical address. The verifier ignores this name and
/// checks the host exactly as given.
#[must_use]
pub fn sni_name(host: &str) -> String {
    if let Some(v4) = hostname::inet_aton(host) {
        return v4.to_string();
    }
    host.parse::<std::net::Ipv6Addr>().map_or_else(|_| host.to_owned(), |v6| v6.to_string())
}

/// A rustls client configuration whose only verifier is `verifier`, for the TLS versions in
/// `range` (by default 1.2 and 1.3, as libpq's default `ssl_min_protocol_version` allows).
/// With `client`, the configuration presents that certificate (`PGSSLCERT`/`PGSSLKEY`); without
/// `sni`, the host name is not sent (`PGSSLSNI`: proxies that route by SNI see what libpq sends).
pub fn client_config(
    verifier: Arc<LibpqVerifier>,
    provider: Arc<CryptoProvider>,
    client: Option<ClientIdentity>,
    range: crate::plan::TlsRange,
    sni: bool,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [range.tls13.then_some(&rustls::version::TLS13), range.tls12.then_some(&rustls::version::TLS12)]
            .into_iter()
            .flatten()
            .collect();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client {
        Some(id) => {
            let key = rustls::sign::CertifiedKey::new(id.chain, Arc::new(id.key));
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = sni;
    Ok(config)
}

/// A client certificate chain and its key, read from the files libpq reads; the key stays in
/// OpenSSL, which signs with it ([`handshake`]).
#[derive(Debug)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: handshake::ClientKey,
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
        let chain = certs
            .iter()
            .map(|c| c.to_der().map(CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
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
        let key = handshake::ClientKey::new(private).map_err(|e| e.to_string())?;
        Ok(Self { chain, key })
    }
}
