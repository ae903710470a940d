//! The check's `SSL_CTX`, made as libpq's `initialize_SSL` makes it, so that the chain's verdict
//! is libpq's by construction.
//!
//! libpq does not build chains itself: it hands the root file to OpenSSL
//! (`SSL_CTX_load_verify_locations`), adds `PGSSLCRL`/`PGSSLCRLDIR` (or `~/.postgresql/root.crl`)
//! with `X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL` when they load, sets
//! `SSL_VERIFY_PEER`, and lets the handshake's `X509_verify_cert` decide at the security level
//! the system's `openssl.cnf` gives every `SSL_CTX`. The check's session runs on this context
//! (`stream`), so v1 roots, CA:TRUE leaves, partial chains, CRL scoping, key sizes and
//! signature algorithms are judged by the same OpenSSL the system's libpq links.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use openssl::ssl::{SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVerifyMode};
use openssl::x509::verify::X509VerifyFlags;

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
/// openssl.cnf and the `SSL_CTX`: most of what OpenSSL costs a launch, spent on another core
/// while the launch waits for its secrets; the root file is then loaded there too
/// ([`Context::in_background`]).
pub struct Context {
    builder: SslContextBuilder,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// Starts OpenSSL and makes a client context as libpq's `initialize_SSL` does: a client
    /// `SSL_CTX` picks up openssl.cnf's system defaults (Debian: SECLEVEL=2), as libpq's does;
    /// SSLv2 and SSLv3 off, and TLS 1.2 as the default minimum (libpq's
    /// `ssl_min_protocol_version`; the connection sets the range the environment asks for).
    pub fn new() -> Result<Self, ChainError> {
        let internal = |e: openssl::error::ErrorStack| ChainError::Internal(e.to_string());
        let mut builder = SslContextBuilder::new(SslMethod::tls_client()).map_err(internal)?;
        builder.set_options(SslOptions::NO_SSLV2 | SslOptions::NO_SSLV3);
        builder.set_mode(SslMode::ACCEPT_MOVING_WRITE_BUFFER);
        // OpenSSL's default groups, P-256 first: its key share is then the one PostgreSQL 15-17
        // take (`ssl_ecdh_curve`, one curve, prime256v1 by default), where X25519's is answered
        // with a HelloRetryRequest, a round trip more. Nothing else changes (a server that wants
        // X25519 still gets it, and the group plays no part in the verdict); where openssl.cnf
        // sets the groups itself, a system policy libpq follows too, it is left alone.
        if !config_sets_groups(&openssl_config()) {
            builder.set_groups_list("P-256:X25519:X448:P-521:P-384").map_err(internal)?;
        }
        Ok(Self { builder })
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

/// The configuration every `SSL_CTX` reads: `OPENSSL_CONF`, else `OPENSSLDIR/openssl.cnf`.
fn openssl_config() -> String {
    let file = std::env::var_os("OPENSSL_CONF").map_or_else(
        || {
            let dir = openssl::version::dir();
            Path::new(dir.split('"').nth(1).unwrap_or("/usr/lib/ssl")).join("openssl.cnf")
        },
        PathBuf::from,
    );
    std::fs::read_to_string(file).unwrap_or_default()
}

/// Whether the configuration may set the TLS groups: a `Groups`/`Curves` line, or an
/// `.include` (Fedora's crypto policies set them in an included file).
fn config_sets_groups(config: &str) -> bool {
    config.lines().map(|l| l.trim_start().to_ascii_lowercase()).any(|l| {
        l.starts_with(".include")
            || ["groups", "curves"]
                .iter()
                .any(|k| l.strip_prefix(k).is_some_and(|rest| rest.trim_start().starts_with('=')))
    })
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
        let Context { mut builder } = context;
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
        if crl_loaded {
            let store = builder.cert_store_mut();
            store.set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL).map_err(internal)?;
        }
        builder.set_verify(SslVerifyMode::PEER);
        Ok(Self { context: builder.build(), crl_loaded })
    }

    /// The context the check's session runs on.
    #[must_use]
    pub fn context(&self) -> &SslContext {
        &self.context
    }

    /// Whether a CRL was loaded (and so revocation is checked).
    #[must_use]
    pub fn crl_checked(&self) -> bool {
        self.crl_loaded
    }
}

fn first_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors().first().and_then(openssl::error::Error::reason).unwrap_or("no certificate found").to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_configuration_that_sets_the_groups_is_left_to_set_them() {
        assert!(!super::config_sets_groups(
            "openssl_conf = default_conf\n[system_default_sect]\nCipherString = DEFAULT:@SECLEVEL=2\n"
        ));
        assert!(super::config_sets_groups("[system_default_sect]\n  Groups = P-256:P-384\n"));
        assert!(super::config_sets_groups("[system_default_sect]\nCurves=X25519\n"));
        assert!(super::config_sets_groups(".include /etc/crypto-policies/back-ends/opensslcnf.config\n"));
        assert!(!super::config_sets_groups("# Groups = P-256\ngroupsfile = x\n"));
    }
}
