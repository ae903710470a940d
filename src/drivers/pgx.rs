//! pgx (Go): what Go's crypto/x509 and crypto/tls refuse that libpq accepts, found by running a
//! real pgx app against every oracle case (tests/oracle.rs), and ported from the Go sources
//! Debian's golang-1.19 (1.19.8-2) ships: `src/crypto/x509/verify.go` (`VerifyHostname`,
//! `matchHostnames`, `validHostname`, `HostnameError.Error`), `src/crypto/x509/x509.go`
//! (insecure and unimplemented signature algorithms), `src/crypto/x509/cert_pool.go`
//! (`AppendCertsFromPEM` takes only `CERTIFICATE` blocks), and pgconn v1.14 (Debian's pgx v4
//! 4.15.0): `sslrootcert` is the only trust (no CRLs, no `~/.postgresql` defaults).

use std::net::IpAddr;

use openssl::nid::Nid;
use openssl::x509::{X509, X509Ref, X509VerifyResult};

use super::Refusal;

/// pgx's verdict on the chain the server sent (leaf first) for `host`, trusting `root_pem`
/// (the `PGSSLROOTCERT` the app gets). `Ok` when pgx would connect (as far as the rules ported
/// here go: the chain itself was verified by libpq's OpenSSL already).
pub(super) fn judge(served: &[X509], host: &str, root_pem: &[u8]) -> Result<(), Refusal> {
    let Some(leaf) = served.first() else { return Ok(()) };
    let go = |why: String, fix: &str| Refusal { driver: "pgx (Go)", why, fix: fix.to_owned() };
    let anchors = super::certificate_blocks(root_pem);
    if anchors.is_empty() {
        return Err(go(
            "cannot parse ``: failed to configure TLS (unable to add CA to cert pool)".into(),
            "Go reads only \"BEGIN CERTIFICATE\" PEM blocks from PGSSLROOTCERT (not OpenSSL's \"TRUSTED CERTIFICATE\"): write the CA as a plain certificate",
        ));
    }
    match leaf.public_key().map(|k| k.id()) {
        Ok(id) if id == openssl::pkey::Id::ED448 => {
            return Err(go(
                "remote error: tls: handshake failure".into(),
                "Go's TLS has no Ed448: give the server an ECDSA P-256, Ed25519 or RSA key",
            ));
        }
        Ok(id) if id == openssl::pkey::Id::RSA_PSS => {
            return Err(go(
                "remote error: tls: handshake failure".into(),
                "Go's TLS cannot use an RSASSA-PSS key (OID id-RSASSA-PSS): give the server an rsaEncryption RSA key",
            ));
        }
        _ => {}
    }
    // Go checks the name before it builds the chain (`Certificate.Verify`).
    verify_hostname(leaf, host).map_err(|why| {
        let fix = if leaf_has_san(leaf) {
            let kind = if host.parse::<IpAddr>().is_ok() { "IP" } else { "DNS" };
            format!("re-issue the certificate with subjectAltName {kind}:{host}")
        } else {
            format!("Go ignores the CN: re-issue the certificate with subjectAltName DNS:{host}")
        };
        go(why, &fix)
    })?;
    // Every signature Go checks: each certificate's but the trust anchor's own, against the
    // candidate issuer it names in its error.
    let known: Vec<&X509Ref> = served.iter().chain(anchors.iter()).map(AsRef::as_ref).collect();
    for cert in served.iter().filter(|c| !anchors.iter().any(|a| super::same(a, c))) {
        let algorithm = cert.signature_algorithm().object().nid();
        let hint = match algorithm {
            Nid::SHA1WITHRSAENCRYPTION => "insecure algorithm SHA1-RSA (temporarily override with GODEBUG=x509sha1=1)",
            Nid::ECDSA_WITH_SHA1 => "insecure algorithm ECDSA-SHA1 (temporarily override with GODEBUG=x509sha1=1)",
            Nid::MD5WITHRSAENCRYPTION => "insecure algorithm MD5-RSA",
            Nid::RSASSAPSS if !crate::tls::binding::pss_salt_is_hash_length(&cert.to_der().unwrap_or_default()) => {
                "algorithm unimplemented"
            }
            _ => continue,
        };
        let fix = if algorithm == Nid::RSASSAPSS {
            "Go verifies RSASSA-PSS only with SHA-256/384/512 and a salt as long as the hash: sign with -sigopt \
             rsa_pss_saltlen:digest, or use PKCS#1 v1.5"
        } else {
            "Go refuses SHA-1 and MD5 signatures: re-issue the certificate signed with SHA-256"
        };
        let candidate = known.iter().find(|i| i.issued(cert) == X509VerifyResult::OK).map_or_else(String::new, |i| {
            format!(" while trying to verify candidate authority certificate \"{}\"", go_cert_name(i))
        });
        return Err(go(
            format!(
                "x509: certificate signed by unknown authority (possibly because of \"x509: cannot verify signature: \
                 {hint}\"{candidate})"
            ),
            fix,
        ));
    }
    // Go trusts PGSSLROOTCERT's certificates and nothing else (libpq also trusts those in the
    // CRL file). Only a missing issuer is Go's concern here: the rest OpenSSL judged for libpq.
    if let Err((code, _)) = super::chains_to(served, &anchors)
        && super::ISSUER_UNKNOWN.contains(&code)
    {
        return Err(go(
            "x509: certificate signed by unknown authority".into(),
            "Go trusts only the certificates in PGSSLROOTCERT: put the issuing CA there",
        ));
    }
    Ok(())
}

/// The name Go gives a candidate issuer: its CN, else its first O, else its serial.
fn go_cert_name(cert: &X509Ref) -> String {
    let first = |nid| cert.subject_name().entries_by_nid(nid).next().and_then(|e| e.data().to_string().ok());
    first(Nid::COMMONNAME).or_else(|| first(Nid::ORGANIZATIONNAME)).unwrap_or_else(|| {
        let serial = cert.serial_number().to_bn().ok().and_then(|n| n.to_dec_str().ok().map(|s| s.to_string()));
        format!("serial:{}", serial.unwrap_or_default())
    })
}

/// Go's `hasSANExtension`.
fn leaf_has_san(leaf: &X509Ref) -> bool {
    leaf.subject_alt_names().is_some()
}

/// Go's `VerifyHostname`, with `HostnameError`'s words.
fn verify_hostname(cert: &X509Ref, host: &str) -> Result<(), String> {
    let dns: Vec<String> = cert
        .subject_alt_names()
        .map(|s| s.iter().filter_map(|g| g.dnsname().map(str::to_owned)).collect())
        .unwrap_or_default();
    let ips: Vec<IpAddr> = cert
        .subject_alt_names()
        .map(|s| {
            s.iter()
                .filter_map(|g| match g.ipaddress()? {
                    [a, b, c, d] => Some(IpAddr::from([*a, *b, *c, *d])),
                    v6 => <[u8; 16]>::try_from(v6).ok().map(IpAddr::from),
                })
                .collect()
        })
        .unwrap_or_default();
    let candidate_ip =
        host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).filter(|_| host.len() >= 3).unwrap_or(host);
    if let Ok(ip) = candidate_ip.parse::<IpAddr>() {
        if ips.iter().any(|c| same_ip(*c, ip)) {
            return Ok(());
        }
        return Err(hostname_error(cert, candidate_ip, &dns, &ips));
    }
    let candidate = host.to_ascii_lowercase();
    let valid_candidate = valid_hostname(&candidate, false);
    for pattern in &dns {
        let matched = if valid_candidate && valid_hostname(pattern, true) {
            match_hostnames(pattern, &candidate)
        } else {
            match_exactly(pattern, &candidate)
        };
        if matched {
            return Ok(());
        }
    }
    Err(hostname_error(cert, host, &dns, &ips))
}

/// Go's `net.IP.Equal`: an IPv4 address equals its IPv4-mapped IPv6 form.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    canonical(a) == canonical(b)
}

fn hostname_error(cert: &X509Ref, host: &str, dns: &[String], ips: &[IpAddr]) -> String {
    let cn = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_default();
    if !leaf_has_san(cert) && match_hostnames(&cn, host) {
        return "x509: certificate relies on legacy Common Name field, use SANs instead".to_owned();
    }
    let valid = if host.parse::<IpAddr>().is_ok() {
        if ips.is_empty() {
            return format!("x509: cannot validate certificate for {host} because it doesn't contain any IP SANs");
        }
        ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    } else {
        dns.join(", ")
    };
    if valid.is_empty() {
        return format!("x509: certificate is not valid for any names, but wanted to match {host}");
    }
    format!("x509: certificate is valid for {valid}, not {host}")
}

/// Go's `validHostname`.
fn valid_hostname(host: &str, pattern: bool) -> bool {
    let host = if pattern { host } else { host.strip_suffix('.').unwrap_or(host) };
    if host.is_empty() {
        return false;
    }
    host.split('.').enumerate().all(|(i, part)| {
        if part.is_empty() {
            return false;
        }
        if pattern && i == 0 && part == "*" {
            return true;
        }
        part.chars().enumerate().all(|(j, c)| c.is_ascii_alphanumeric() || (c == '-' && j != 0) || c == '_')
    })
}

/// Go's `matchExactly`.
fn match_exactly(a: &str, b: &str) -> bool {
    !(a.is_empty() || a == "." || b.is_empty() || b == ".") && a.eq_ignore_ascii_case(b)
}

/// Go's `matchHostnames`: a whole left-most `*` label at most, the host's trailing dot ignored.
fn match_hostnames(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len() && p.iter().zip(&h).enumerate().all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_as_go_matches_them() {
        assert!(match_hostnames("*.example.test", "db.example.test"));
        assert!(!match_hostnames("*.example.test", "a.b.example.test"));
        assert!(!match_hostnames("*.example.test", "example.test"));
        assert!(match_hostnames("LocalHost", "localhost."));
        assert!(!match_hostnames("localhost.", "localhost"), "a pattern's trailing dot is a label");
        assert!(!valid_hostname("db*.example.test", true), "partial wildcards are matched exactly");
        assert!(match_exactly("db*.example.test", "DB*.example.test"));
        assert!(valid_hostname("_svc.example.test", false));
        assert!(!valid_hostname("-db.example.test", false));
        assert!(same_ip("::ffff:127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap()));
    }
}
