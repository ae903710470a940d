//! What the check reports about the server's certificate (subject, SANs, issuer, expiry), and
//! the names libpq matches the host against. Everything here is public information.

use openssl::nid::Nid;
use openssl::x509::{X509, X509NameRef, X509Ref};
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

/// Parses DER; `None` when OpenSSL cannot.
pub(crate) fn parse(der: &[u8]) -> Option<X509> {
    X509::from_der(der).ok()
}

/// The SubjectPublicKeyInfo of a DER certificate, as the bytes written in it. OpenSSL's own
/// route (`d2i_X509`, then `i2d_PUBKEY`) runs its 3.x decoders and encoders: about 10 million
/// instructions for one RSA-4096 certificate, a millisecond of the check. `None` when `der` is
/// not shaped like a certificate.
pub(crate) fn spki(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, certificate, _) = tlv(der)? else { return None };
    let (SEQUENCE, tbs, _) = tlv(certificate)? else { return None };
    let mut rest = tbs;
    // version [0] EXPLICIT: absent in X.509 v1 certificates, which libpq accepts.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = tlv(rest)?.2;
    }
    let (SEQUENCE, _, after) = tlv(rest)? else { return None };
    rest.get(..rest.len() - after.len())
}

/// The hash an RSASSA-PSS signature on a DER certificate uses: the hashAlgorithm in the
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

#[cfg(test)]
mod tests {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::X509Builder;
    use openssl::x509::extension::SubjectAlternativeName;

    use super::*;

    fn cert(key: &PKey<Private>, version: i32, digest: MessageDigest) -> Vec<u8> {
        let mut b = X509Builder::new().unwrap();
        b.set_version(version).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "db.example").unwrap();
        let name = name.build();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(3).unwrap()).unwrap();
        if version == 2 {
            let san = SubjectAlternativeName::new().dns("db.example").build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(san).unwrap();
        }
        b.sign(key, digest).unwrap();
        b.build().to_der().unwrap()
    }

    #[test]
    fn spki_is_the_key_openssl_reads() {
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let keys = [
            (PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(), MessageDigest::sha256()),
            (PKey::from_ec_key(ec).unwrap(), MessageDigest::sha256()),
            (PKey::generate_ed25519().unwrap(), MessageDigest::null()),
        ];
        for (key, digest) in &keys {
            for version in [0, 2] {
                let der = cert(key, version, *digest);
                let expected = X509::from_der(&der).unwrap().public_key().unwrap().public_key_to_der().unwrap();
                assert_eq!(spki(&der), Some(expected.as_slice()), "{:?} v{}", key.id(), version + 1);
            }
        }
    }

    #[test]
    fn spki_refuses_what_is_not_a_certificate() {
        let key = PKey::generate_ed25519().unwrap();
        let der = cert(&key, 2, MessageDigest::null());
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(spki(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(spki(b"\x04\x03abc"), None);
        // A length wider than four bytes is refused, not wrapped.
        assert_eq!(spki(b"\x30\x85\x01\x00\x00\x00\x00"), None);
    }
}
