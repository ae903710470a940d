//! Whether the server asked for a client certificate, and whether one was loaded to answer it:
//! what libpq's `cert_cb` (fe-secure-openssl.c) records for `sslcertmode=require`. OpenSSL
//! calls a client's certificate callback only when a CertificateRequest arrives, which nothing
//! else in rust-openssl's safe API tells; this crate is the workspace's only unsafe code.
#![deny(missing_docs)]

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use foreign_types::ForeignTypeRef;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};

/// What the certificate callback saw during one handshake.
#[derive(Debug, Default)]
pub struct CertRequest {
    requested: AtomicBool,
    sent: AtomicBool,
}

impl CertRequest {
    /// The server sent a CertificateRequest.
    #[must_use]
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// A certificate was loaded when it did (so OpenSSL sent it).
    #[must_use]
    pub fn sent(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }
}

#[expect(unsafe_code, reason = "the declaration of a C function of libssl")]
unsafe extern "C" {
    // OpenSSL 1.1.0 and later (ssl.h): `void SSL_set_cert_cb(SSL *s, int (*cb)(SSL *ssl, void
    // *arg), void *arg)`; libssl is linked by openssl-sys.
    fn SSL_set_cert_cb(
        ssl: *mut openssl_sys::SSL,
        cb: Option<unsafe extern "C" fn(*mut openssl_sys::SSL, *mut c_void) -> c_int>,
        arg: *mut c_void,
    );
}

/// libpq's `cert_cb`: note the request, and whether a certificate is loaded to answer it; return
/// 1 ("go on") without changing anything.
#[expect(unsafe_code, reason = "a callback OpenSSL calls, with its arguments")]
unsafe extern "C" fn noted(ssl: *mut openssl_sys::SSL, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `CertRequest` that `watch` put in this SSL's ex data, which holds an
    // `Arc` to it until the SSL is freed; OpenSSL calls this only during the SSL's handshake.
    let seen = unsafe { &*arg.cast::<CertRequest>() };
    seen.requested.store(true, Ordering::Release);
    // SAFETY: OpenSSL passes the live SSL whose handshake is running.
    let ssl = unsafe { SslRef::from_ptr(ssl) };
    if ssl.certificate().is_some() {
        seen.sent.store(true, Ordering::Release);
    }
    1
}

/// Records in the returned [`CertRequest`] whether the server asks `ssl` for a client
/// certificate during its handshake. Call once per `Ssl`, after its certificate is set.
#[expect(unsafe_code, reason = "the call that installs the callback")]
pub fn watch(ssl: &mut Ssl) -> Result<Arc<CertRequest>, openssl::error::ErrorStack> {
    static INDEX: OnceLock<Index<Ssl, Arc<CertRequest>>> = OnceLock::new();
    let index = if let Some(index) = INDEX.get() {
        *index
    } else {
        // Two threads racing here each get an index; one is kept, the other is unused.
        let fresh = Ssl::new_ex_index()?;
        *INDEX.get_or_init(|| fresh)
    };
    let seen = Arc::new(CertRequest::default());
    let arg = Arc::as_ptr(&seen).cast_mut().cast::<c_void>();
    // The SSL owns a reference from here on, so `arg` outlives every call of the callback.
    ssl.set_ex_data(index, seen.clone());
    // SAFETY: `ssl` is a live SSL we hold mutably; `noted` has the signature OpenSSL expects, and
    // `arg` points to a `CertRequest` the SSL itself keeps alive (above).
    unsafe { SSL_set_cert_cb(ssl.as_ptr(), Some(noted), arg) };
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode};
    use openssl::x509::{X509, X509NameBuilder};

    use super::*;

    fn self_signed(cn: &str) -> (X509, PKey<Private>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        (cert.build(), key)
    }

    /// A handshake with a server that asks for a client certificate when `asks`, from a client
    /// that has one when `has`: what the callback recorded.
    fn handshake(asks: bool, has: bool) -> (bool, bool) {
        let (server_cert, server_key) = self_signed("server");
        let (client_cert, client_key) = self_signed("client");
        let (a, b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
            acceptor.set_certificate(&server_cert).unwrap();
            acceptor.set_private_key(&server_key).unwrap();
            // Ask, and accept whatever comes (PostgreSQL's own choice without clientcert).
            let mode = if asks { SslVerifyMode::PEER } else { SslVerifyMode::NONE };
            acceptor.set_verify_callback(mode, |_, _| true);
            let mut tls = acceptor.build().accept(b).unwrap();
            std::io::Write::write_all(&mut tls, b"x").unwrap();
        });
        let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
        connector.set_verify(SslVerifyMode::NONE);
        let mut ssl = connector.build().configure().unwrap().into_ssl("server").unwrap();
        if has {
            ssl.set_certificate(&client_cert).unwrap();
            ssl.set_private_key(&client_key).unwrap();
        }
        let seen = watch(&mut ssl).unwrap();
        let mut tls = ssl.connect(a).unwrap();
        // TLS 1.3 finishes the client's side before the server reads its certificate.
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut tls, &mut byte).unwrap();
        server.join().unwrap();
        (seen.requested(), seen.sent())
    }

    #[test]
    fn the_callback_runs_only_when_the_server_asks() {
        assert_eq!(handshake(false, true), (false, false));
        assert_eq!(handshake(false, false), (false, false));
        assert_eq!(handshake(true, false), (true, false));
        assert_eq!(handshake(true, true), (true, true));
    }
}
