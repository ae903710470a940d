//! pgjdbc (Java): what pgjdbc and Java's PKIX refuse that libpq accepts, found by running a
//! real pgjdbc app (examples/pgjdbc, Debian's libpostgresql-jdbc-java 42.5.5 on OpenJDK 17)
//! against every oracle case, and ported from pgjdbc's `PGjdbcHostnameVerifier.verify` and
//! `verifyHostName` (pgjdbc/pgjdbc, pgjdbc/src/main/java/org/postgresql/ssl/
//! PGjdbcHostnameVerifier.java, at 13f1bcddf80821461ccf2cf3bd91269d54d6b433; unchanged in what
//! is ported since 42.2) and `LibPQFactory` (`sslrootcert` is the only trust, read by Java's
//! `CertificateFactory`, which cannot read OpenSSL's `TRUSTED CERTIFICATE` blocks).

use std::net::IpAddr;
use std::path::Path;

use openssl::nid::Nid;
use openssl::x509::{X509, X509Ref};

use super::Refusal;

/// pgjdbc's verdict on the chain `served` (leaf first) for `host`, trusting the root file
/// `root` (content `root_pem`).
pub(super) fn judge(served: &[X509], host: &str, root: &Path, root_pem: &[u8]) -> Result<(), Refusal> {
    let Some(leaf) = served.first() else { return Ok(()) };
    let java = |why: String, fix: &str| Refusal { driver: "pgjdbc (Java)", why, fix: fix.to_owned() };
    if String::from_utf8_lossy(root_pem).contains("-----BEGIN TRUSTED CERTIFICATE-----") {
        return Err(java(
            format!("Loading the SSL root certificate {} into a TrustManager failed.", root.display()),
            "Java reads only \"BEGIN CERTIFICATE\" blocks (not OpenSSL's \"TRUSTED CERTIFICATE\"): write the CA as a plain certificate",
        ));
    }
    if let Err((code, _)) = super::chains_to(served, &super::certificate_blocks(root_pem))
        && super::ISSUER_UNKNOWN.contains(&code)
    {
        return Err(java(
            "SSL error: PKIX path building failed: sun.security.provider.certpath.SunCertPathBuilderException: unable \
             to find valid certification path to requested target"
                .into(),
            "pgjdbc trusts only the certificates in its sslrootcert (PGSSLROOTCERT): put the issuing CA there",
        ));
    }
    if !verify(leaf, host) {
        return Err(java(
            format!("The hostname {host} could not be verified by hostnameverifier PgjdbcHostnameVerifier."),
            &format!(
                "pgjdbc ignores the CN once the certificate has any DNS subjectAltName: add subjectAltName {}:{host}",
                if host.parse::<IpAddr>().is_ok() { "IP" } else { "DNS" }
            ),
        ));
    }
    Ok(())
}

/// `PGjdbcHostnameVerifier.verify`: DNS and IP SANs (IPs as Java writes them); the CN only when
/// there is no DNS SAN at all, the most specific CN when there are several.
fn verify(cert: &X509Ref, host: &str) -> bool {
    let canonical = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let mut any_dns = false;
    for san in cert.subject_alt_names().iter().flat_map(|s| s.iter()) {
        let value = if let Some(dns) = san.dnsname() {
            any_dns = true;
            dns.to_owned()
        } else if let Some(ip) = san.ipaddress() {
            java_ip(ip)
        } else {
            continue;
        };
        if verify_host_name(canonical, &value) {
            return true;
        }
    }
    if any_dns {
        return false;
    }
    let mut names: Vec<String> =
        cert.subject_name().entries_by_nid(Nid::COMMONNAME).filter_map(|e| e.data().to_string().ok()).collect();
    names.sort_by_key(|n| specificity(n));
    names.last().is_some_and(|cn| verify_host_name(canonical, cn))
}

/// `HOSTNAME_PATTERN_COMPARATOR`: more dots, fewer stars, longer is more specific.
fn specificity(name: &str) -> (usize, std::cmp::Reverse<usize>, usize) {
    (name.matches('.').count(), std::cmp::Reverse(name.matches('*').count()), name.len())
}

/// An iPAddress SAN as `X509Certificate.getSubjectAlternativeNames` gives it: dotted IPv4, or
/// eight uncompressed hex groups for IPv6 (`0:0:0:0:0:0:0:1`).
fn java_ip(bytes: &[u8]) -> String {
    match bytes {
        [a, b, c, d] => format!("{a}.{b}.{c}.{d}"),
        v6 if v6.len() == 16 => {
            v6.chunks(2).map(|g| format!("{:x}", u16::from_be_bytes([g[0], g[1]]))).collect::<Vec<_>>().join(":")
        }
        _ => String::new(),
    }
}

/// `verifyHostName`: no `*` → a case-insensitive comparison; else only a leading `*` covering
/// one label, in a pattern with a dot.
fn verify_host_name(host: &str, pattern: &str) -> bool {
    let Some(last_star) = pattern.rfind('*') else { return host.eq_ignore_ascii_case(pattern) };
    if last_star > 0 || !pattern.contains('.') || host.len() < pattern.len() - 1 {
        return false;
    }
    let offset = host.len() - pattern.len() + 1;
    if host[..offset].contains('.') {
        return false;
    }
    host.get(offset..).is_some_and(|rest| rest.eq_ignore_ascii_case(&pattern[1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_as_pgjdbc_matches_them() {
        assert!(verify_host_name("db.example.test", "*.example.test"));
        assert!(!verify_host_name("a.b.example.test", "*.example.test"));
        assert!(!verify_host_name("example.test", "*.example.test"));
        assert!(!verify_host_name("db1.example.test", "db*.example.test"));
        assert!(!verify_host_name("localhost", "*"));
        assert!(verify_host_name("LOCALHOST", "localhost"));
        assert_eq!(java_ip(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), "0:0:0:0:0:0:0:1");
        let mut cns = ["*.example.test", "db.example.test", "example.test"];
        cns.sort_by_key(|n| specificity(n));
        assert_eq!(cns.last(), Some(&"db.example.test"));
    }
}
