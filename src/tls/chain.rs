//! Certificate-chain verification with the verdict libpq gets.
//!
//! libpq does not build chains itself: it hands the root file to OpenSSL
//! (`SSL_CTX_load_verify_locations`), adds `PGSSLCRL`/`PGSSLCRLDIR` (or `~/.postgresql/root.crl`)
//! with `X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL` when they load, and lets
//! `X509_verify_cert` decide with the `ssl_server` purpose at the `SSL_CTX`'s security level.
//! Re-implementing OpenSSL's path building (v1 roots, CA:TRUE leaves, expired anchors,
//! partial chains, CRL scoping, key-size levels from openssl.cnf) would only approximate that, so
//! this module asks the same OpenSSL the system's libpq links, configured the same way. The TLS
//! session itself stays rustls'; this is called from its certificate verifier.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use openssl::ssl::{SslContext, SslContextBuilder, SslMethod};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreRef;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509, X509PurposeId, X509Ref, X509StoreContext};

use super::info::{CertInfo, cert_info};

/// Why the chain was refused, in libpq's and OpenSSL's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The root file is missing (libpq checks with `stat()` first).
    #[error("root certificate file \"{0}\" does not exist; provide it (--ca, PGSSLROOTCERT or ~/.postgresql/root.crt)")]
    RootMissing(PathBuf),
    /// The root file has no certificate or CRL OpenSSL can read.
    #[error("could not read root certificate file \"{path}\": {reason}")]
    RootUnreadable {
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason.
        reason: String,
    },
    /// `X509_verify_cert` said no. libpq shows only "certificate verify failed"; the reason and
    /// depth are added so that the user can act.
    #[error("SSL error: certificate verify failed: {reason} (at depth {depth}{subject})")]
    Refused {
        /// OpenSSL's verify error string, e.g. "certificate has expired".
        reason: String,
        /// 0 is the server's certificate.
        depth: u32,
        /// The subject of the certificate at fault, when known.
        subject: String,
    },
    /// The server sent something OpenSSL cannot parse.
    #[error("SSL error: the server's certificate could not be parsed")]
    Unparsable,
    /// OpenSSL itself failed.
    #[error("OpenSSL: {0}")]
    Internal(String),
}

/// A trust store loaded the way libpq loads it.
pub struct Chain {
    context: SslContext,
    crl_loaded: bool,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("crl_loaded", &self.crl_loaded).finish_non_exhaustive()
    }
}

/// The part of [`Chain::load`] that does not depend on the root file: OpenSSL's start-up,
/// openssl.cnf, and two `SSL_CTX`s (one only to read the configured security level). That is
/// about 2 ms of CPU, which a launch spends on another core while it waits for its secrets; the
/// root file is then loaded there too, while the server forks and signs its TLS hello
/// ([`Context::in_background`]).
pub struct Context {
    builder: SslContextBuilder,
    level: u32,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("level", &self.level).finish_non_exhaustive()
    }
}

impl Context {
    /// Starts OpenSSL and makes a client context as libpq's `initialize_SSL` does.
    pub fn new() -> Result<Self, ChainError> {
        let internal = |e: openssl::error::ErrorStack| ChainError::Internal(e.to_string());
        // A client SSL_CTX picks up openssl.cnf's system defaults (Debian: SECLEVEL=2), as libpq's does.
        let level = SslContext::builder(SslMethod::tls_client()).map_err(internal)?.build().security_level();
        let builder = SslContextBuilder::new(SslMethod::tls_client()).map_err(internal)?;
        Ok(Self { builder, level })
    }

    /// [`Context::new`] on its own thread, which then loads the root file it is handed by
    /// [`Pending::load`]: OpenSSL's start-up overlaps the secrets' fetch, and the root file's
    /// loading the connection's first round trips.
    #[must_use]
    pub fn in_background() -> Pending {
        let (roots, roots_received) = mpsc::channel::<Roots>();
        let (loaded, chain) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new().name("openssl".into()).spawn(move || {
            let context = Self::new();
            if let Ok(roots) = roots_received.recv() {
                let _ = loaded.send(context.and_then(|context| roots.load(context)));
            }
        });
        Pending(thread.ok().map(|_| (roots, chain)))
    }
}

/// What [`Chain::load`] reads besides the context.
struct Roots {
    root: PathBuf,
    crl_file: Option<PathBuf>,
    crl_dir: Option<PathBuf>,
}

impl Roots {
    fn load(&self, context: Context) -> Result<Chain, ChainError> {
        Chain::load(context, &self.root, self.crl_file.as_deref(), self.crl_dir.as_deref())
    }
}

/// What the OpenSSL thread answers.
type Loaded = Result<Chain, ChainError>;

/// A [`Context`] being made on another thread.
#[derive(Debug)]
pub struct Pending(Option<(mpsc::Sender<Roots>, mpsc::Receiver<Loaded>)>);

/// `sslrootcert=system`: libpq 16 and later trust the system's roots
/// (`SSL_CTX_set_default_verify_paths`, which `SSL_CERT_FILE`/`SSL_CERT_DIR` redirect).
#[must_use]
pub fn is_system(root: &Path) -> bool {
    root == Path::new("system")
}

impl Pending {
    /// Hands the root file and the CRLs to the thread, which loads them into its context; a
    /// root file that does not exist is reported at once. Done here if the thread could not be
    /// started.
    pub fn load(self, root: &Path, crl_file: Option<&Path>, crl_dir: Option<&Path>) -> Result<Loading, ChainError> {
        if !is_system(root) && std::fs::metadata(root).is_err() {
            return Err(ChainError::RootMissing(root.to_owned()));
        }
        let roots = Roots {
            root: root.to_owned(),
            crl_file: crl_file.map(Path::to_owned),
            crl_dir: crl_dir.map(Path::to_owned),
        };
        match self.0 {
            Some((thread, chain)) => match thread.send(roots) {
                Ok(()) => Ok(Loading(Err(chain))),
                Err(mpsc::SendError(roots)) => Ok(Loading(Ok(Context::new().and_then(|c| roots.load(c))))),
            },
            None => Ok(Loading(Ok(Context::new().and_then(|c| roots.load(c))))),
        }
    }
}

/// A [`Chain`] being loaded on the OpenSSL thread (or already loaded).
#[derive(Debug)]
pub struct Loading(Result<Loaded, mpsc::Receiver<Loaded>>);

impl Loading {
    /// The chain, once loaded.
    pub fn wait(self) -> Result<Chain, ChainError> {
        match self.0 {
            Ok(loaded) => loaded,
            Err(chain) => {
                chain.recv().unwrap_or_else(|_| Err(ChainError::Internal("the OpenSSL thread stopped".into())))
            }
        }
    }
}

impl Chain {
    /// Loads the root file and the CRLs into `context` as libpq's `initialize_SSL` does (on the
    /// OpenSSL thread, through [`Pending::load`]).
    fn load(
        context: Context,
        root: &Path,
        crl_file: Option<&Path>,
        crl_dir: Option<&Path>,
    ) -> Result<Self, ChainError> {
        let internal = |e: openssl::error::ErrorStack| ChainError::Internal(e.to_string());
        let Context { mut builder, level } = context;
        // (Its existence was checked by Pending::load, as libpq stat()s it first.)
        if is_system(root) {
            builder.set_default_verify_paths().map_err(internal)?;
        } else {
            builder
                .set_ca_file(root)
                .map_err(|e| ChainError::RootUnreadable { path: root.to_owned(), reason: first_reason(&e) })?;
        }
        // libpq: X509_STORE_load_locations(store, file, dir) on the same store, CRL checking
        // only when it succeeds, any failure silently ignored. Its quirks come with it: a
        // directory is not looked at until a CRL is wanted (a missing one fails every
        // verification), the file's certificates become trusted too, and a file that loads
        // nothing means no CRL check, even with a directory. SSL_CTX_load_verify_locations is
        // that call on the context's store; a path that is not UTF-8 (the crate would panic) is
        // not loaded.
        let utf8 = |p: Option<&Path>| p.is_none_or(|p| p.to_str().is_some());
        let crl_loaded = (crl_file.is_some() || crl_dir.is_some())
            && utf8(crl_file)
            && utf8(crl_dir)
            && builder.load_verify_locations(crl_file, crl_dir).is_ok();
        let store = builder.cert_store_mut();
        let mut param = openssl::x509::verify::X509VerifyParam::new().map_err(internal)?;
        param.set_auth_level(i32::try_from(level).unwrap_or(i32::MAX));
        store.set_param(&param).map_err(internal)?;
        if crl_loaded {
            store.set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL).map_err(internal)?;
        }
        store.set_purpose(X509PurposeId::SSL_SERVER).map_err(internal)?;
        Ok(Self { context: builder.build(), crl_loaded })
    }

    /// Whether a CRL was loaded (and so revocation is checked).
    #[must_use]
    pub fn crl_checked(&self) -> bool {
        self.crl_loaded
    }

    fn store(&self) -> &X509StoreRef {
        self.context.cert_store()
    }

    /// `X509_verify_cert` on the chain the server sent (the parsed leaf, then the others as
    /// DER). On success, the chain OpenSSL built, leaf to trust anchor.
    pub fn verify(&self, leaf: &X509Ref, intermediates: &[&[u8]]) -> Result<Vec<CertInfo>, ChainError> {
        let mut untrusted = Stack::new().map_err(|e| ChainError::Internal(e.to_string()))?;
        for der in intermediates {
            let cert = X509::from_der(der).map_err(|_| ChainError::Unparsable)?;
            untrusted.push(cert).map_err(|e| ChainError::Internal(e.to_string()))?;
        }
        let mut ctx = X509StoreContext::new().map_err(|e| ChainError::Internal(e.to_string()))?;
        let outcome = ctx
            .init(self.store(), leaf, &untrusted, |c| {
                let ok = c.verify_cert()?;
                let subject = c
                    .current_cert()
                    .map(|cert| format!(", {}", super::info::name_line(cert.subject_name())))
                    .unwrap_or_default();
                let built: Vec<CertInfo> =
                    c.chain().map(|chain| chain.iter().map(cert_info).collect()).unwrap_or_default();
                Ok((ok, c.error(), c.error_depth(), subject, built))
            })
            .map_err(|e| ChainError::Internal(e.to_string()))?;
        match outcome {
            (true, _, _, _, built) => Ok(built),
            (false, error, depth, subject, _) => {
                Err(ChainError::Refused { reason: error.error_string().to_owned(), depth, subject })
            }
        }
    }
}

fn first_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors().first().and_then(openssl::error::Error::reason).unwrap_or("no certificate found").to_owned()
}
