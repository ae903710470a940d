//! What the check reports about the server's certificate (subject, SANs, issuer, expiry), and
//! the names libpq matches the host against. Everything here is public information.

use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509Ref};
use serde::Serialize;

use super::hostname::{PeerNames, San};

/// One certificate, as the report shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    /// `CN=…, O=…`.
    pub subject: String,
    /// dNSName and iPAddress SANs.
    pub sans: Vec<String>,
    /// The issuer's name.
    pub issuer: String,
    /// notAfter, RFC 3339 (UTC).
    pub not_after: String,
    /// Whole days until notAfter (negative once expired).
    pub days_left: i64,
}

/// A distinguished name on one line, `CN=db, O=Acme`.
pub(crate) fn name_line(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn cert_info(cert: &X509Ref) -> CertInfo {
    let sans = peer_names(cert)
        .sans
        .iter()
        .map(|s| match s {
            San::Dns(n) => format!("DNS:{}", String::from_utf8_lossy(n)),
            San::Ip(b) if b.len() == 4 => {
                format!("IP:{}", std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            San::Ip(b) => match <[u8; 16]>::try_from(b.as_slice()) {
                Ok(a) => format!("IP:{}", std::net::Ipv6Addr::from(a)),
                Err(_) => "IP:<malformed>".to_owned(),
            },
        })
        .collect();
    let days_left = openssl::asn1::Asn1Time::days_from_now(0)
        .ok()
        .and_then(|now| now.diff(cert.not_after()).ok())
        .map_or(0, |d| i64::from(d.days));
    CertInfo {
        subject: name_line(cert.subject_name()),
        sans,
        issuer: name_line(cert.issuer_name()),
        not_after: openssl::asn1::Asn1Time::from_unix(0)
            .ok()
            .and_then(|epoch| epoch.diff(cert.not_after()).ok())
            .map_or_else(
                || cert.not_after().to_string(),
                |d| {
                    let secs = i64::from(d.days) * 86_400 + i64::from(d.secs);
                    let at = u64::try_from(secs)
                        .map_or(std::time::UNIX_EPOCH, |s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
                    crate::report::rfc3339(at)
                },
            ),
        days_left,
    }
}

/// The SANs and first CN, raw, as libpq reads them.
pub(crate) fn peer_names(cert: &X509Ref) -> PeerNames {
    let sans = cert
        .subject_alt_names()
        .map(|stack| {
            stack
                .iter()
                .filter_map(|g| {
                    if let Some(ip) = g.ipaddress() {
                        Some(San::Ip(ip.to_vec()))
                    } else {
                        g.dnsname().map(|d| San::Dns(d.as_bytes().to_vec()))
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let common_name = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next().map(|e| e.data().as_slice().to_vec());
    PeerNames { sans, common_name }
}
