//! Who issued the certificate a secret store presented, for the message when the store's
//! client refused it (rustls says "UnknownIssuer", not whose). One more handshake, on that
//! failure path only, verified as strictly as the client's own; nothing it says is trusted,
//! it only names what was refused.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use openssl::ssl::{HandshakeError, SslConnector, SslMethod};

use super::info::name_line;

/// `its certificate CN=… is issued by CN=…, which is not trusted (OpenSSL: …)` for the TLS
/// server at `url`, verified against the system roots and `extra_ca`; `None` when it could not
/// be reached again or verifies now.
#[must_use]
pub fn describe_refused(url: &str, extra_ca: Option<&Path>) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_or_known_default()?;
    let addr = (host.as_str(), port).to_socket_addrs().ok()?.next()?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut builder = SslConnector::builder(SslMethod::tls_client()).ok()?;
    if let Some(ca) = extra_ca {
        builder.set_ca_file(ca).ok()?;
    }
    let Err(HandshakeError::Failure(failed)) = builder.build().connect(&host, stream) else {
        return None;
    };
    let ssl = failed.ssl();
    let leaf = ssl.peer_cert_chain()?.iter().next()?;
    Some(format!(
        "its certificate {} is issued by {}, which is not trusted (OpenSSL: {})",
        name_line(leaf.subject_name()),
        name_line(leaf.issuer_name()),
        ssl.verify_result().error_string()
    ))
}
