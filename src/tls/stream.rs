//! The TLS transport the check's connection runs over: OpenSSL (tokio-openssl) on the context
//! [`super::chain`] made, finished per connection as libpq finishes it, with SCRAM's channel
//! binding computed as libpq computes it; the negotiated protocol and cipher, and whether the
//! SASL exchange offered and chose channel binding, are kept for the check and its report (so
//! that no query is needed to learn them).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::sync::PoisonError;
use std::time::Instant;

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ssl::{Ssl, SslRef, SslVerifyMode};
use openssl::x509::X509Ref;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::{CertInfo, ChainError, ClientIdentity, Refusal, Session, info};
use crate::libpq::TlsRange;

/// The session's protocol and cipher, named as OpenSSL (and so `pg_stat_ssl`) names them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Negotiated {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// e.g. `TLS_AES_256_GCM_SHA384`, `ECDHE-RSA-AES256-GCM-SHA384`.
    pub cipher: String,
    /// The cipher's key size.
    pub bits: i32,
}

impl Negotiated {
    fn of(ssl: &SslRef) -> Self {
        let (cipher, bits) = ssl.current_cipher().map(|c| (c.name().to_owned(), c.bits().secret)).unwrap_or_default();
        Self { version: ssl.version_str().to_owned(), cipher, bits }
    }
}

/// The `tls-server-end-point` channel binding data of the server's certificate, as libpq's
/// `pgtls_get_peer_certificate_hash` makes it: the certificate hashed with the digest of its
/// signature (`X509_get_signature_info`, which reads RSASSA-PSS parameters), SHA-256 for MD5 and
/// SHA-1. Where libpq finds no digest (an Ed25519 signature), its error instead.
pub(crate) fn end_point(cert: &X509Ref, der: &[u8]) -> Result<Vec<u8>, String> {
    let undetermined = || "could not determine server certificate signature algorithm".to_owned();
    let signature = cert.signature_algorithm().object().nid();
    let digest = if signature == Nid::RSASSAPSS {
        super::info::pss_hash(der).and_then(pss_digest).ok_or_else(undetermined)?
    } else {
        signature.signature_algorithms().ok_or_else(undetermined)?.digest
    };
    let md = match digest {
        Nid::MD5 | Nid::SHA1 => MessageDigest::sha256(),
        other => MessageDigest::from_nid(other)
            .ok_or_else(|| format!("could not find digest for NID {}", other.short_name().unwrap_or("UNDEF")))?,
    };
    cert.digest(md).map(|d| d.to_vec()).map_err(|e| e.to_string())
}

/// The SHA-1 and SHA-2 hashes RSASSA-PSS parameters name, by the DER contents of their OIDs.
fn pss_digest(oid: &[u8]) -> Option<Nid> {
    const NIST_HASH: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
    if oid == super::info::SHA1_OID {
        return Some(Nid::SHA1);
    }
    match oid.strip_prefix(NIST_HASH)? {
        [1] => Some(Nid::SHA256),
        [2] => Some(Nid::SHA384),
        [3] => Some(Nid::SHA512),
        [4] => Some(Nid::SHA224),
        _ => None,
    }
}

/// tokio-postgres' TLS maker for the check: one per check, sharing its session record.
#[derive(Debug, Clone)]
pub struct MakeConnect {
    session: Arc<Session>,
    client: Option<Arc<ClientIdentity>>,
    range: TlsRange,
    sni: bool,
}

impl MakeConnect {
    /// Connections recorded in `session`, presenting `client`, within `range`, with SNI when
    /// `sni` (`PGSSLSNI`) and libpq's rule allow.
    #[must_use]
    pub fn new(session: Arc<Session>, client: Option<ClientIdentity>, range: TlsRange, sni: bool) -> Self {
        Self { session, client: client.map(Arc::new), range, sni }
    }
}

impl<S> MakeTlsConnect<S> for MakeConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, io::Error> {
        let sni = (self.sni && super::sends_sni(host)).then(|| host.to_owned());
        Ok(Connect { session: self.session.clone(), client: self.client.clone(), range: self.range, sni })
    }
}

/// One handshake.
#[derive(Debug)]
pub struct Connect {
    session: Arc<Session>,
    client: Option<Arc<ClientIdentity>>,
    range: TlsRange,
    sni: Option<String>,
}

/// A failed handshake, in libpq's words ("SSL error: …").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeFailed(pub String);

/// What the verify callback saw: when it was first called, the first failure, and the chain
/// OpenSSL built.
#[derive(Default)]
struct Verification {
    started: Option<Instant>,
    failure: Option<ChainError>,
    built: Vec<CertInfo>,
}

impl Connect {
    /// The `SSL` for this connection, as libpq's `initialize_SSL` finishes it: the range, SNI,
    /// the client certificate and key, and a verify callback that, as
    /// libpq's, returns OpenSSL's verdict unchanged (it only notes what OpenSSL saw).
    fn ssl(&self, verification: &Arc<std::sync::Mutex<Verification>>) -> Result<Ssl, io::Error> {
        let chain = self.session.chain().map_err(|e| {
            self.session.update(|seen| seen.refusal = Some(Refusal::Chain(e.clone())));
            io::Error::other(HandshakeFailed(e.to_string()))
        })?;
        let internal = |e: openssl::error::ErrorStack| io::Error::other(HandshakeFailed(format!("SSL error: {e}")));
        let mut ssl = Ssl::new(chain.context()).map_err(internal)?;
        // libpq always sets the minimum (TLSv1.2 by default), the maximum only when asked: an
        // openssl.cnf MaxProtocol otherwise stands, for both.
        ssl.set_min_proto_version(Some(self.range.min)).map_err(internal)?;
        if let Some(max) = self.range.max {
            ssl.set_max_proto_version(Some(max)).map_err(internal)?;
        }
        if let Some(host) = &self.sni {
            ssl.set_hostname(host).map_err(internal)?;
        }
        if let Some(id) = &self.client {
            let (leaf, rest) = id.chain.split_first().ok_or_else(|| internal(openssl::error::ErrorStack::get()))?;
            ssl.set_certificate(leaf).map_err(internal)?;
            for cert in rest {
                ssl.add_chain_cert(cert.clone()).map_err(internal)?;
            }
            // (That the key is the certificate's was checked when it was read, in libpq's words.)
            ssl.set_private_key(&id.key).map_err(internal)?;
        }
        let noted = verification.clone();
        ssl.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
            let mut v = noted.lock().unwrap_or_else(PoisonError::into_inner);
            v.started.get_or_insert_with(Instant::now);
            if !ok && v.failure.is_none() {
                let subject =
                    ctx.current_cert().map(|c| format!(", {}", info::name_line(c.subject_name()))).unwrap_or_default();
                v.failure = Some(ChainError::Refused {
                    reason: ctx.error().error_string().to_owned(),
                    depth: ctx.error_depth(),
                    subject,
                });
            }
            if ok && ctx.error_depth() == 0 {
                v.built = ctx.chain().map(|c| c.iter().map(info::cert_info).collect()).unwrap_or_default();
            }
            ok
        });
        Ok(ssl)
    }
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let verification = Arc::new(std::sync::Mutex::new(Verification::default()));
            let ssl = self.ssl(&verification)?;
            let mut tls = tokio_openssl::SslStream::new(ssl, stream)
                .map_err(|e| io::Error::other(HandshakeFailed(format!("SSL error: {e}"))))?;
            let handshake = Pin::new(&mut tls).connect().await;
            let v = std::mem::take(&mut *verification.lock().unwrap_or_else(PoisonError::into_inner));
            let verified_at = Instant::now();
            let ssl = tls.ssl();
            let sent: Vec<CertInfo> =
                ssl.peer_cert_chain().map(|c| c.iter().map(info::cert_info).collect()).unwrap_or_default();
            if let Err(e) = handshake {
                let refusal = v.failure.map(Refusal::Chain);
                let words = match &refusal {
                    Some(refusal) => refusal.to_string(),
                    None => libpq_words(&e),
                };
                self.session.update(|seen| {
                    seen.chain = sent;
                    seen.refusal = refusal;
                });
                return Err(io::Error::other(HandshakeFailed(words)));
            }
            let leaf = ssl
                .peer_certificate()
                .ok_or_else(|| io::Error::other(HandshakeFailed("SSL error: the server sent no certificate".into())))?;
            // libpq checks the name once the handshake is done, with its own rules.
            let named = self.session.check_name(&leaf);
            let end_point = leaf.to_der().map_err(|e| e.to_string()).and_then(|der| end_point(&leaf, &der));
            let negotiated = Negotiated::of(ssl);
            let refused = named.as_ref().err().map(ToString::to_string);
            self.session.update(|seen| {
                seen.verified = v.started.map(|started| (started, verified_at));
                seen.negotiated = Some(negotiated);
                match named {
                    Ok(()) => {
                        seen.chain = v.built;
                        seen.end_point = Some(end_point);
                    }
                    Err(refusal) => {
                        seen.chain = sent;
                        seen.refusal = Some(refusal);
                    }
                }
            });
            if let Some(words) = refused {
                return Err(io::Error::other(HandshakeFailed(words)));
            }
            Ok(Stream { tls, session: self.session, first_reply: Some(Vec::new()), awaiting_choice: false })
        })
    }
}

/// A handshake failure as libpq reports it: `SSL error: ` and OpenSSL's first reason, or
/// `SSL SYSCALL error: EOF detected` when the server closed the connection.
fn libpq_words(e: &openssl::ssl::Error) -> String {
    if let Some(stack) = e.ssl_error()
        && let Some(reason) = stack.errors().first().and_then(openssl::error::Error::reason)
    {
        return format!("SSL error: {reason}");
    }
    match e.io_error() {
        Some(io) => format!("SSL SYSCALL error: {io}"),
        None => "SSL SYSCALL error: EOF detected".to_owned(),
    }
}

/// The encrypted stream tokio-postgres reads and writes. It also watches the start of the
/// session: whether the server's SASL request offers SCRAM-SHA-256-PLUS and whether the client
/// chose it, which tokio-postgres does not tell (the check connects once, with libpq's
/// channel_binding=prefer, and still reports whether the session is bound).
#[derive(Debug)]
pub struct Stream<S> {
    tls: tokio_openssl::SslStream<S>,
    session: Arc<Session>,
    /// The server's first message so far, until it is complete (then `None`).
    first_reply: Option<Vec<u8>>,
    /// A SASL request was seen: the client's next message answers it.
    awaiting_choice: bool,
}

/// The longest first reply watched: a SASL request names a few mechanisms.
const FIRST_REPLY_MAX: usize = 512;

/// What the server's first message says, as far as it has arrived.
#[derive(Debug, PartialEq, Eq)]
enum FirstReply {
    /// Not complete yet.
    Partial,
    /// Not a SASL request (an error, or another kind of authentication).
    NotSasl,
    /// A SASL request; whether SCRAM-SHA-256-PLUS is among its mechanisms.
    Sasl { plus: bool },
}

fn first_reply(bytes: &[u8]) -> FirstReply {
    let Some((&tag, rest)) = bytes.split_first() else { return FirstReply::Partial };
    let Some(len) = rest.get(..4).map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize) else {
        return FirstReply::Partial;
    };
    if tag != b'R' || !(8..=FIRST_REPLY_MAX).contains(&len) {
        return FirstReply::NotSasl;
    }
    let Some(body) = rest.get(4..len) else { return FirstReply::Partial };
    if body[..4] != 10u32.to_be_bytes() {
        return FirstReply::NotSasl;
    }
    FirstReply::Sasl { plus: body[4..].split(|b| *b == 0).any(|m| m == b"SCRAM-SHA-256-PLUS") }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.session.end_point().map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tls).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(first)) = (&polled, &mut self.first_reply) {
            let room = FIRST_REPLY_MAX + 5 - first.len();
            first.extend(buf.filled()[before..].iter().take(room));
            match first_reply(first) {
                FirstReply::Partial if first.len() < FIRST_REPLY_MAX + 5 && buf.filled().len() > before => {}
                FirstReply::Sasl { plus } => {
                    self.first_reply = None;
                    self.session.sasl_offered(plus);
                    self.awaiting_choice = true;
                }
                _ => self.first_reply = None,
            }
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // The SASLInitialResponse: 'p', its length, then the mechanism's name.
        if self.awaiting_choice && buf.first() == Some(&b'p') {
            self.awaiting_choice = false;
            self.session.sasl_chosen(buf.get(5..).is_some_and(|m| m.starts_with(b"SCRAM-SHA-256-PLUS\0")));
        }
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_reply_reads_sasl_requests_as_they_arrive() {
        let mut msg = vec![b'R'];
        let body = b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";
        msg.extend(u32::try_from(4 + body.len()).unwrap().to_be_bytes());
        msg.extend(body);
        for cut in 0..msg.len() {
            assert_eq!(first_reply(&msg[..cut]), FirstReply::Partial, "{cut} bytes");
        }
        assert_eq!(first_reply(&msg), FirstReply::Sasl { plus: true });
        let pooler = [b'R', 0, 0, 0, 23, 0, 0, 0, 10].iter().chain(b"SCRAM-SHA-256\0\0").copied().collect::<Vec<_>>();
        assert_eq!(first_reply(&pooler), FirstReply::Sasl { plus: false });
        // AuthenticationOk (trust), an MD5 request, an error.
        assert_eq!(first_reply(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]), FirstReply::NotSasl);
        assert_eq!(first_reply(&[b'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4]), FirstReply::NotSasl);
        assert_eq!(first_reply(&[b'E', 0, 0, 0, 40]), FirstReply::NotSasl);
    }

    use openssl::pkey::{PKey, Private};
    use openssl::x509::{X509, X509Builder, X509NameBuilder};

    use super::*;

    fn signed(key: &PKey<Private>, digest: MessageDigest) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "db.example").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(3).unwrap()).unwrap();
        b.sign(key, digest).unwrap();
        b.build()
    }

    #[test]
    fn end_point_hashes_with_the_signature_digest_as_libpq_does() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        for (digest, expected) in [
            (MessageDigest::sha384(), MessageDigest::sha384()),
            (MessageDigest::sha512(), MessageDigest::sha512()),
            (MessageDigest::sha1(), MessageDigest::sha256()),
        ] {
            let cert = signed(&rsa, digest);
            let der = cert.to_der().unwrap();
            assert_eq!(end_point(&cert, &der), Ok(openssl::hash::hash(expected, &der).unwrap().to_vec()));
        }
        let ed = PKey::generate_ed25519().unwrap();
        let cert = signed(&ed, MessageDigest::null());
        assert_eq!(end_point(&cert, &cert.to_der().unwrap()), Err("could not find digest for NID UNDEF".to_owned()));
    }

    #[test]
    fn pss_parameters_name_the_hash() {
        // AlgorithmIdentifier { id-RSASSA-PSS, { [0] { sha384 }, … } } inside a skeleton certificate.
        let sha384 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
        let hash = [&[0xa0, 0x0d, 0x30, 0x0b, 0x06, 0x09][..], &sha384].concat();
        let params = [&[0x30, 0x0f][..], &hash].concat();
        let pss_oid = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
        let algorithm = [&[0x30, 0x1c][..], &pss_oid, &params].concat();
        let tbs = [0x30, 0x00];
        let cert = [&[0x30, 0x20][..], &tbs, &algorithm].concat();
        assert_eq!(super::super::info::pss_hash(&cert), Some(&sha384[..]));
        assert_eq!(pss_digest(&sha384), Some(Nid::SHA384));
        let defaults = [&[0x30, 0x11][..], &tbs, &[0x30, 0x0d][..], &pss_oid, &[0x30, 0x00][..]].concat();
        assert_eq!(super::super::info::pss_hash(&defaults), Some(super::super::info::SHA1_OID));
        assert_eq!(super::super::info::pss_hash(&cert[..cert.len() - 3]), None);
    }
}
