//! Host-name matching exactly as libpq does it for `sslmode=verify-full`: a port of
//! `pq_verify_peer_name_matches_certificate*` and `wildcard_certificate_match`
//! (src/interfaces/libpq/fe-secure-common.c) and of
//! `pgtls_verify_peer_name_matches_certificate_guts` (fe-secure-openssl.c), PostgreSQL 15.
//!
//! The rules, as libpq has them (not as RFC 6125 has them):
//! - the host is an IP address when `inet_aton` (which takes `127.1` and `0x7f.0.0.1`) or
//!   `inet_pton(AF_INET6)` accepts it;
//! - every dNSName and iPAddress SAN is compared, in order, until one matches;
//! - the Subject CN (the first one) is compared only when no SAN of the host's own kind exists
//!   (so an IP host falls back to the CN even when dNSName SANs exist);
//! - names compare case-insensitively and byte for byte: no trailing-dot folding, no IDNA;
//! - a wildcard is only `*.` as the whole left-most label and matches exactly one label;
//! - a name with an embedded NUL is an error, not a mismatch.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A subjectAltName entry, raw as the certificate has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum San {
    /// dNSName (IA5String bytes).
    Dns(Vec<u8>),
    /// iPAddress (4 or 16 bytes, network order; other lengths are malformed).
    Ip(Vec<u8>),
}

/// The names a certificate presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerNames {
    /// dNSName and iPAddress SANs, in certificate order (other kinds are ignored, as libpq does).
    pub(crate) sans: Vec<San>,
    /// The first commonName attribute of the subject, raw.
    pub(crate) common_name: Option<Vec<u8>>,
}

/// Why libpq would refuse the certificate's names; `Display` is libpq's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameError {
    NoHost,
    EmbeddedNul,
    BadIpLength(usize),
    Mismatch { first: String, others: usize, host: String },
    NoNames,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHost => f.write_str("host name must be specified for a verified SSL connection"),
            Self::EmbeddedNul => f.write_str("SSL certificate's name contains embedded null"),
            Self::BadIpLength(n) => {
                write!(f, "certificate contains IP address with invalid length {n}")
            }
            Self::Mismatch { first, others: 0, host } => {
                write!(f, "server certificate for \"{first}\" does not match host name \"{host}\"")
            }
            Self::Mismatch { first, others, host } => write!(
                f,
                "server certificate for \"{first}\" (and {others} other name{}) does not match host name \"{host}\"",
                if *others == 1 { "" } else { "s" }
            ),
            Self::NoNames => f.write_str("could not get server's host name from server certificate"),
        }
    }
}

impl std::error::Error for NameError {}

/// libpq's verdict on `host` against the certificate's names.
pub(crate) fn verify(host: &str, names: &PeerNames) -> Result<(), NameError> {
    if host.is_empty() {
        return Err(NameError::NoHost);
    }
    let host_is_ip = inet_aton(host).is_some() || inet_pton6(host).is_some();
    let mut examined = 0usize;
    let mut first: Option<String> = None;
    let mut check_cn = true;
    let mut matched = false;
    for san in &names.sans {
        if matches!(san, San::Ip(_)) == host_is_ip {
            check_cn = false;
        }
        examined += 1;
        let (hit, shown) = match san {
            San::Dns(name) => match_name(name, host)?,
            San::Ip(bytes) => match_ip(bytes, host)?,
        };
        first.get_or_insert(shown);
        if hit {
            matched = true;
            check_cn = false;
            break;
        }
    }
    if check_cn && let Some(cn) = &names.common_name {
        examined += 1;
        let (hit, shown) = match_name(cn, host)?;
        first.get_or_insert(shown);
        matched = hit;
    }
    match (matched, first) {
        (true, _) => Ok(()),
        (false, Some(first)) => Err(NameError::Mismatch { first, others: examined - 1, host: host.to_owned() }),
        (false, None) => Err(NameError::NoNames),
    }
}

/// `pq_verify_peer_name_matches_certificate_name`: exact (case-insensitive) or wildcard.
fn match_name(name: &[u8], host: &str) -> Result<(bool, String), NameError> {
    if name.contains(&0) {
        return Err(NameError::EmbeddedNul);
    }
    let shown = String::from_utf8_lossy(name).into_owned();
    let host = host.as_bytes();
    Ok((name.eq_ignore_ascii_case(host) || wildcard_match(name, host), shown))
}

/// `wildcard_certificate_match`, byte for byte.
fn wildcard_match(pattern: &[u8], string: &[u8]) -> bool {
    let (lenpat, lenstr) = (pattern.len(), string.len());
    if lenpat < 3 || pattern[0] != b'*' || pattern[1] != b'.' || lenpat > lenstr {
        return false;
    }
    let start = lenstr - lenpat + 1;
    if !pattern[1..].eq_ignore_ascii_case(&string[start..]) {
        return false;
    }
    // A dot left of where the pattern's suffix starts means the '*' would span two labels.
    !string[..start - 1].contains(&b'.')
}

/// `pq_verify_peer_name_matches_certificate_ip`.
fn match_ip(bytes: &[u8], host: &str) -> Result<(bool, String), NameError> {
    match bytes.len() {
        4 => {
            let cert = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
            Ok((inet_aton(host) == Some(cert), cert.to_string()))
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            let cert = Ipv6Addr::from(a);
            Ok((inet_pton6(host) == Some(cert), cert.to_string()))
        }
        n => Err(NameError::BadIpLength(n)),
    }
}

/// glibc's `inet_aton`: one to four parts, each decimal, octal (leading 0) or hex (0x), the last
/// part filling the remaining bytes; trailing white space (and anything after it) is ignored.
pub(crate) fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let bytes = text.as_bytes();
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    let mut i = 0;
    loop {
        if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let (value, next) = strtoul(bytes, i)?;
        i = next;
        if bytes.get(i) == Some(&b'.') {
            if parts.len() > 2 || value > 0xff {
                return None;
            }
            parts.push(value);
            i += 1;
        } else {
            parts.push(value);
            break;
        }
    }
    if let Some(c) = bytes.get(i)
        && !c.is_ascii_whitespace()
        && *c != 0x0b
    {
        return None;
    }
    let last = *parts.last()?;
    let limit: u64 = match parts.len() {
        1 => 0xffff_ffff,
        2 => 0x00ff_ffff,
        3 => 0xffff,
        _ => 0xff,
    };
    if last > limit {
        return None;
    }
    let mut word: u64 = last;
    for (k, p) in parts[..parts.len() - 1].iter().enumerate() {
        word |= p << (24 - 8 * k);
    }
    Some(Ipv4Addr::from(u32::try_from(word).ok()?))
}

/// `strtoul(s, &end, 0)` from position `i` (which holds a digit): returns the value and the end.
fn strtoul(bytes: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let mut base = 10;
    if bytes[i] == b'0' {
        if matches!(bytes.get(i + 1), Some(b'x' | b'X')) && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
            base = 16;
            i += 2;
        } else {
            base = 8;
        }
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(d) = bytes.get(i).and_then(|c| char::from(*c).to_digit(base)) {
        value = if let Some(v) = value.checked_mul(u64::from(base)).and_then(|v| v.checked_add(u64::from(d))) {
            v
        } else {
            overflow = true;
            u64::MAX
        };
        i += 1;
    }
    (!overflow).then_some((value, i))
}

/// `inet_pton(AF_INET6, …)`.
fn inet_pton6(text: &str) -> Option<Ipv6Addr> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(n: &str) -> San {
        San::Dns(n.as_bytes().to_vec())
    }

    fn names(sans: Vec<San>, cn: Option<&str>) -> PeerNames {
        PeerNames { sans, common_name: cn.map(|c| c.as_bytes().to_vec()) }
    }

    #[test]
    fn inet_aton_takes_the_old_notations() {
        assert_eq!(inet_aton("127.0.0.1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(inet_aton("127.1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(inet_aton("0x7f.0.0.1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(inet_aton("0177.0.0.1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(inet_aton("2130706433"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(inet_aton("127.0.0.1 trailing"), Some(Ipv4Addr::LOCALHOST));
        for bad in ["", "localhost", "256.0.0.1", "1.2.3.4.5", "08.0.0.1", "1.2.3.", ".1", "1..2", "0x", "4294967296"] {
            assert_eq!(inet_aton(bad), None, "{bad}");
        }
    }

    #[test]
    fn san_and_cn_rules() {
        let n = names(vec![dns("db.example.test")], Some("other.test"));
        assert_eq!(verify("DB.Example.Test", &n), Ok(()));
        assert_eq!(
            verify("other.test", &n).unwrap_err().to_string(),
            "server certificate for \"db.example.test\" does not match host name \"other.test\""
        );
        // CN-only certificate: the CN is used.
        assert_eq!(verify("localhost", &names(vec![], Some("localhost"))), Ok(()));
        // IP host with only dNSName SANs falls back to the CN (libpq, not RFC 6125).
        let n = names(vec![dns("db.test")], Some("127.0.0.1"));
        assert_eq!(verify("127.0.0.1", &n), Ok(()));
        // IP host with an iPAddress SAN: the CN is not consulted.
        let n = names(vec![San::Ip(vec![10, 0, 0, 1])], Some("127.0.0.1"));
        assert_eq!(
            verify("127.0.0.1", &n).unwrap_err().to_string(),
            "server certificate for \"10.0.0.1\" does not match host name \"127.0.0.1\""
        );
        assert_eq!(verify("127.1", &names(vec![San::Ip(vec![127, 0, 0, 1])], None)), Ok(()));
        let n = names(vec![dns("a.test"), dns("b.test"), San::Ip(vec![1, 2, 3, 4])], None);
        assert_eq!(
            verify("c.test", &n).unwrap_err().to_string(),
            "server certificate for \"a.test\" (and 2 other names) does not match host name \"c.test\""
        );
        assert_eq!(verify("x", &names(vec![], None)), Err(NameError::NoNames));
        assert_eq!(verify("", &names(vec![], Some("x"))), Err(NameError::NoHost));
        assert_eq!(verify("a", &names(vec![San::Dns(b"a\0.evil".to_vec())], None)), Err(NameError::EmbeddedNul));
        assert_eq!(verify("a", &names(vec![San::Ip(vec![1, 2, 3])], None)), Err(NameError::BadIpLength(3)));
    }

    #[test]
    fn wildcards_and_trailing_dots() {
        let n = names(vec![dns("*.example.test")], None);
        assert_eq!(verify("db.example.test", &n), Ok(()));
        assert!(verify("a.b.example.test", &n).is_err());
        assert!(verify("example.test", &n).is_err());
        assert!(verify(".example.test", &n).is_err());
        assert!(verify("db.example.test", &names(vec![dns("d*.example.test")], None)).is_err());
        assert!(verify("db.example.test.", &names(vec![dns("db.example.test")], None)).is_err());
        assert!(verify("db.example.test", &names(vec![dns("db.example.test.")], None)).is_err());
    }
}
