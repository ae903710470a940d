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

use openssl::ssl::{Ssl, SslRef, SslVerifyMode};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use launcher_tls_ffi::CertRequest;

use super::binding::end_point;
use super::{CertInfo, ChainError, ClientIdentity, Refusal, Session, info};
use crate::libpq::{CertMode, RequireAuth, TlsRange};

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

/// tokio-postgres' TLS maker for the check: one per check, sharing its session record.
#[derive(Debug, Clone)]
pub struct MakeConnect {
    session: Arc<Session>,
    client: Option<Arc<ClientIdentity>>,
    range: TlsRange,
    sni: bool,
    require_auth: Option<Arc<RequireAuth>>,
    require_cert: bool,
}

impl MakeConnect {
    /// Connections recorded in `session`, presenting `client`, within `range`, with SNI when
    /// `sni` (`PGSSLSNI`) and libpq's rule allow, refusing what `require_auth`
    /// (`PGREQUIREAUTH`) does not allow before a password goes out, and, when `cert_mode` is
    /// `require` (`PGSSLCERTMODE`), a server that lets the client in without asking for its
    /// certificate and getting it.
    #[must_use]
    pub fn new(
        session: Arc<Session>,
        client: Option<ClientIdentity>,
        range: TlsRange,
        sni: bool,
        require_auth: Option<RequireAuth>,
        cert_mode: CertMode,
    ) -> Self {
        Self {
            session,
            client: client.map(Arc::new),
            range,
            sni,
            require_auth: require_auth.map(Arc::new),
            require_cert: cert_mode == CertMode::Require,
        }
    }

    /// The same settings, recorded in `session` (the next host of a list).
    #[must_use]
    pub fn with_session(&self, session: Arc<Session>) -> Self {
        Self { session, ..self.clone() }
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
        Ok(Connect {
            session: self.session.clone(),
            client: self.client.clone(),
            range: self.range,
            sni,
            require_auth: self.require_auth.clone(),
            require_cert: self.require_cert,
        })
    }
}

/// One handshake.
#[derive(Debug)]
pub struct Connect {
    session: Arc<Session>,
    client: Option<Arc<ClientIdentity>>,
    range: TlsRange,
    sni: Option<String>,
    require_auth: Option<Arc<RequireAuth>>,
    require_cert: bool,
}

/// The server asked for an authentication `PGREQUIREAUTH` does not allow, in libpq's words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthRefused(pub String);

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
    fn ssl(
        &self,
        verification: &Arc<std::sync::Mutex<Verification>>,
    ) -> Result<(Ssl, Option<Arc<CertRequest>>), io::Error> {
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
        // libpq 17+ names the protocol in every ClientHello; PostgreSQL 17+ requires it of a
        // direct TLS connection and checks it on the others (older servers ignore it).
        ssl.set_alpn_protos(b"\x0apostgresql").map_err(internal)?;
        if let Some(id) = &self.client {
            let (leaf, rest) = id.chain.split_first().ok_or_else(|| internal(openssl::error::ErrorStack::get()))?;
            ssl.set_certificate(leaf).map_err(internal)?;
            for cert in rest {
                ssl.add_chain_cert(cert.clone()).map_err(internal)?;
            }
            // (That the key is the certificate's was checked when it was read, in libpq's words.)
            ssl.set_private_key(&id.key).map_err(internal)?;
        }
        // libpq's cert_cb: whether the server asked for the certificate (and got it).
        let cert_request =
            if self.require_cert { Some(launcher_tls_ffi::watch(&mut ssl).map_err(internal)?) } else { None };
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
        Ok((ssl, cert_request))
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
            let began = Instant::now();
            let verification = Arc::new(std::sync::Mutex::new(Verification::default()));
            let (ssl, cert_request) = self.ssl(&verification)?;
            let mut tls = tokio_openssl::SslStream::new(ssl, stream)
                .map_err(|e| io::Error::other(HandshakeFailed(format!("SSL error: {e}"))))?;
            let handshake = Pin::new(&mut tls).connect().await;
            let v = std::mem::take(&mut *verification.lock().unwrap_or_else(PoisonError::into_inner));
            let verified_at = Instant::now();
            let ssl = tls.ssl();
            let served: Vec<openssl::x509::X509> =
                ssl.peer_cert_chain().map(|c| c.iter().map(ToOwned::to_owned).collect()).unwrap_or_default();
            let sent: Vec<CertInfo> = served.iter().map(|c| info::cert_info(c)).collect();
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
                seen.verified = v.started.map(|started| (began, started, verified_at));
                seen.negotiated = Some(negotiated);
                seen.served = served;
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
            Ok(Stream {
                tls,
                session: self.session,
                replies: Some(Vec::new()),
                first: true,
                awaiting_choice: false,
                require_auth: self.require_auth,
                cert_request,
            })
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

/// The encrypted stream tokio-postgres reads and writes. It also watches the server's messages
/// until authentication ends: whether its SASL request offers SCRAM-SHA-256-PLUS and whether the
/// client chose it, which tokio-postgres does not tell (the check connects once, with libpq's
/// channel_binding=prefer, and still reports whether the session is bound); `PGREQUIREAUTH`
/// against its first request; `PGSSLCERTMODE=require` at its AuthenticationOk, where libpq's
/// `check_expected_areq` judges both.
#[derive(Debug)]
pub struct Stream<S> {
    tls: tokio_openssl::SslStream<S>,
    session: Arc<Session>,
    /// The server's bytes not yet read as a whole message, until authentication ends (then
    /// `None`).
    replies: Option<Vec<u8>>,
    /// No message has been read whole yet.
    first: bool,
    /// A SASL request was seen: the client's next message answers it.
    awaiting_choice: bool,
    /// `PGREQUIREAUTH`, applied to the server's first authentication request.
    require_auth: Option<Arc<RequireAuth>>,
    /// `PGSSLCERTMODE=require`: what the handshake's certificate callback saw.
    cert_request: Option<Arc<CertRequest>>,
}

/// The longest authentication message watched: a SASL request names a few mechanisms, SCRAM's
/// other messages are shorter.
const REPLY_MAX: usize = 512;

/// The message at the front of what the server sent, as far as it has arrived.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Not complete yet.
    Partial,
    /// Not an authentication request (an error, say).
    Other,
    /// An authentication request (`R`) of this code, `len` bytes in all; for SASL (10), whether
    /// SCRAM-SHA-256-PLUS is among its mechanisms.
    Auth { code: u32, plus: bool, len: usize },
}

fn reply(bytes: &[u8]) -> Reply {
    let Some((&tag, rest)) = bytes.split_first() else { return Reply::Partial };
    let Some(len) = rest.get(..4).map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize) else {
        return Reply::Partial;
    };
    if tag != b'R' || !(8..=REPLY_MAX).contains(&len) {
        return Reply::Other;
    }
    let Some(body) = rest.get(4..len) else { return Reply::Partial };
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let plus = code == 10 && body[4..].split(|b| *b == 0).any(|m| m == b"SCRAM-SHA-256-PLUS");
    Reply::Auth { code, plus, len: len + 1 }
}

/// libpq's `sslcertmode=require` verdict at AuthenticationOk, in its words.
fn cert_refusal(seen: &CertRequest) -> Option<&'static str> {
    if !seen.requested() {
        Some("server did not request an SSL certificate")
    } else if !seen.sent() {
        Some("server accepted connection without a valid SSL certificate")
    } else {
        None
    }
}

impl<S> Stream<S> {
    /// Reads the whole messages `replies` holds, until authentication ends; an error when one
    /// is refused (before tokio-postgres reads it, so no password answers a refused request).
    fn watch(&mut self) -> io::Result<()> {
        loop {
            let Some(pending) = &mut self.replies else { return Ok(()) };
            let (code, plus) = match reply(pending) {
                Reply::Partial => return Ok(()),
                Reply::Other => {
                    self.replies = None;
                    return Ok(());
                }
                Reply::Auth { code, plus, len } => {
                    pending.drain(..len);
                    (code, plus)
                }
            };
            let first = std::mem::replace(&mut self.first, false);
            if code == 0 {
                self.replies = None;
                if let Some(refusal) = self.cert_request.as_deref().and_then(cert_refusal) {
                    return Err(io::Error::other(AuthRefused(refusal.to_owned())));
                }
            }
            if first {
                if let Some(refusal) = self.require_auth.as_ref().and_then(|r| r.refuses(code)) {
                    return Err(io::Error::other(AuthRefused(refusal)));
                }
                if code == 10 {
                    self.session.sasl_offered(plus);
                    self.awaiting_choice = true;
                }
            }
        }
    }
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
        if let (Poll::Ready(Ok(())), Some(pending)) = (&polled, &mut self.replies) {
            let new = &buf.filled()[before..];
            if new.is_empty() {
                self.replies = None;
            } else {
                pending.extend_from_slice(new);
                if let Err(e) = self.watch() {
                    return Poll::Ready(Err(e));
                }
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
    use super::*;

    #[test]
    fn replies_read_sasl_requests_as_they_arrive() {
        let mut msg = vec![b'R'];
        let body = b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";
        msg.extend(u32::try_from(4 + body.len()).unwrap().to_be_bytes());
        msg.extend(body);
        for cut in 0..msg.len() {
            assert_eq!(reply(&msg[..cut]), Reply::Partial, "{cut} bytes");
        }
        assert_eq!(reply(&msg), Reply::Auth { code: 10, plus: true, len: msg.len() });
        let pooler = [b'R', 0, 0, 0, 23, 0, 0, 0, 10].iter().chain(b"SCRAM-SHA-256\0\0").copied().collect::<Vec<_>>();
        assert_eq!(reply(&pooler), Reply::Auth { code: 10, plus: false, len: 24 });
        // AuthenticationOk (trust) with what follows it, an MD5 request, an error.
        assert_eq!(reply(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'S', 0]), Reply::Auth { code: 0, plus: false, len: 9 });
        assert_eq!(reply(&[b'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4]), Reply::Auth { code: 5, plus: false, len: 13 });
        assert_eq!(reply(&[b'E', 0, 0, 0, 40]), Reply::Other);
    }
}
