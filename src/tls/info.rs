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

/// The hash an RSASSA-PSS signature on a DER certificate uses (rust-openssl has no binding for
/// `X509_get_signature_info`, which libpq calls, and this crate has no unsafe code): the hashAlgorithm in the
/// parameters of the certificate's (outer) signatureAlgorithm, as the OID's DER contents
/// ([`SHA1_OID`], the default, when the parameters do not say). `None` when `der` is not shaped
/// like a certificate.
pub(crate) fn pss_hash(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (SEQUENCE, certificate, _) = tlv(der)? else { return None };
    let (SEQUENCE, _, rest) = tlv(certificate)? else { return None };
    let (SEQUENCE, algorithm, _) = tlv(rest)? else { return None };
    let (OID, _, params) = tlv(algorithm)? else { return None };
    let (SEQUENCE, params, _) = tlv(params)? else { return None };
    // hashAlgorithm [0] EXPLICIT AlgorithmIdentifier DEFAULT sha1
    match tlv(params) {
        Some((0xa0, hash, _)) => {
            let (SEQUENCE, hash, _) = tlv(hash)? else { return None };
            let (OID, oid, _) = tlv(hash)? else { return None };
            Some(oid)
        }
        _ => Some(SHA1_OID),
    }
}

/// The DER contents of SHA-1's OID, 1.3.14.3.2.26.
pub(crate) const SHA1_OID: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];

/// One DER element: (tag, contents, what follows). Only the low tag numbers a certificate uses.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (bytes.iter().fold(0, |len, b| len << 8 | usize::from(*b)), rest)
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}
