//! node-postgres (Node.js): what node-postgres and Node's TLS refuse that libpq accepts, found
//! by running a real node-postgres app (examples/node-postgres: pg 8.13 on Node 20, whose
//! bundled OpenSSL 3.0 runs at its own security level) against every oracle case, and ported
//! from Node 20's `tls.checkServerIdentity` and `check` (lib/tls.js) and `onConnectSecure`
//! (lib/_tls_wrap.js), and pg's `lib/connection.js` (it sets `servername` only for a host that is
//! not an IP address, so Node then checks an IP host's certificate against "localhost").
//! Node trusts its bundled roots and the `CERTIFICATE` blocks of NODE_EXTRA_CA_CERTS.

use std::net::IpAddr;

use openssl::nid::Nid;
use openssl::x509::{X509, X509Ref};

use super::Refusal;

/// node-postgres's verdict on the chain `served` (leaf first) for `host`, with the CA bundle
/// `root_pem` in NODE_EXTRA_CA_CERTS.
pub(super) fn judge(served: &[X509], host: &str, root_pem: &[u8]) -> Result<(), Refusal> {
    let Some(leaf) = served.first() else { return Ok(()) };
    let node = |why: String, fix: &str| Refusal { driver: "node-postgres (Node.js)", why, fix: fix.to_owned() };
    let anchors = super::certificate_blocks(root_pem);
    // Node's OpenSSL, at its security level 1, refuses SHA-1 and MD5 signatures in the chain.
    for cert in served.iter().filter(|c| !anchors.iter().any(|a| super::same(a, c))) {
        let weak = matches!(
            cert.signature_algorithm().object().nid(),
            Nid::SHA1WITHRSAENCRYPTION | Nid::ECDSA_WITH_SHA1 | Nid::MD5WITHRSAENCRYPTION | Nid::DSAWITHSHA1
        );
        if weak {
            return Err(node(
                "CA signature digest algorithm too weak".into(),
                "Node refuses SHA-1 and MD5 signatures: re-issue the certificate signed with SHA-256",
            ));
        }
    }
    if let Err((code, words)) = super::chains_to(served, &anchors)
        && super::ISSUER_UNKNOWN.contains(&code)
    {
        // Node's OpenSSL says "unable to verify the first certificate" (its well-known
        // UNABLE_TO_VERIFY_LEAF_SIGNATURE) when the server sent only the leaf, where a store
        // verification outside a handshake says "unable to get local issuer certificate".
        let words =
            if code == 20 && served.len() == 1 { "unable to verify the first certificate".to_owned() } else { words };
        return Err(node(
            words,
            "Node trusts its bundled roots and the \"BEGIN CERTIFICATE\" blocks of NODE_EXTRA_CA_CERTS (the launcher's \
             CA bundle): put the issuing CA there",
        ));
    }
    // pg gives Node no server name for an IP host, and Node then checks "localhost".
    let identity = if host.parse::<IpAddr>().is_ok() { "localhost" } else { host };
    check_server_identity(identity, leaf).map_err(|reason| {
        let fix = if identity == host {
            format!("re-issue the certificate with subjectAltName DNS:{host}")
        } else {
            "node-postgres checks an IP host's certificate against \"localhost\": add subjectAltName DNS:localhost, \
             or connect by name"
                .to_owned()
        };
        node(format!("Hostname/IP does not match certificate's altnames: {reason}"), &fix)
    })
}

/// `tls.checkServerIdentity`: DNS and IP SANs; the CN only when there is neither a DNS SAN nor
/// (for a name) anything else to match; `Err` is the `reason` Node puts in its error.
fn check_server_identity(hostname: &str, cert: &X509Ref) -> Result<(), String> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let mut alt_names = Vec::new();
    for san in cert.subject_alt_names().iter().flat_map(|s| s.iter()) {
        if let Some(name) = san.dnsname() {
            dns.push(name.to_owned());
            alt_names.push(format!("DNS:{name}"));
        } else if let Some(ip) = san.ipaddress() {
            let text = openssl_ip(ip);
            alt_names.push(format!("IP Address:{text}"));
            ips.extend(ip_of(ip));
        }
    }
    let hostname = hostname.strip_suffix('.').unwrap_or(hostname);
    if let Ok(ip) = hostname.parse::<IpAddr>() {
        return if ips.contains(&ip) {
            Ok(())
        } else {
            let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
            Err(format!("IP: {hostname} is not in the cert's list: {}", list.join(", ")))
        };
    }
    let cns: Vec<String> =
        cert.subject_name().entries_by_nid(Nid::COMMONNAME).filter_map(|e| e.data().to_string().ok()).collect();
    let host_parts: Vec<String> = hostname.to_lowercase().split('.').map(str::to_owned).collect();
    if !dns.is_empty() {
        return if dns.iter().any(|p| check(&host_parts, p)) {
            Ok(())
        } else {
            Err(format!("Host: {hostname}. is not in the cert's altnames: {}", alt_names.join(", ")))
        };
    }
    if cns.is_empty() {
        return Err("Cert does not contain a DNS name".to_owned());
    }
    if cns.iter().any(|p| check(&host_parts, p)) {
        Ok(())
    } else {
        Err(format!("Host: {hostname}. is not cert's CN: {}", cns.join(",")))
    }
}

/// Node's `check(hostParts, pattern, wildcards = true)`.
fn check(host: &[String], pattern: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern).to_lowercase();
    let parts: Vec<&str> = pattern.split('.').collect();
    if host.len() != parts.len() || parts.contains(&"") {
        return false;
    }
    if parts.iter().any(|p| p.chars().any(|c| !('\u{21}'..='\u{7f}').contains(&c))) {
        return false;
    }
    if host[1..].iter().zip(&parts[1..]).any(|(h, p)| h != p) {
        return false;
    }
    let (sub, pattern_sub) = (&host[0], parts[0]);
    let pieces: Vec<&str> = pattern_sub.split('*').collect();
    if pieces.len() == 1 || pattern_sub.contains("xn--") {
        return sub == pattern_sub;
    }
    if pieces.len() > 2 || parts.len() <= 2 {
        return false;
    }
    let (prefix, suffix) = (pieces[0], pieces[1]);
    prefix.len() + suffix.len() <= sub.len() && sub.starts_with(prefix) && sub.ends_with(suffix)
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes {
        [a, b, c, d] => Some(IpAddr::from([*a, *b, *c, *d])),
        v6 => <[u8; 16]>::try_from(v6).ok().map(IpAddr::from),
    }
}

/// An iPAddress SAN as OpenSSL prints it (and Node's `subjectaltname` shows it).
fn openssl_ip(bytes: &[u8]) -> String {
    match bytes {
        [a, b, c, d] => format!("{a}.{b}.{c}.{d}"),
        v6 if v6.len() == 16 => {
            v6.chunks(2).map(|g| format!("{:X}", u16::from_be_bytes([g[0], g[1]]))).collect::<Vec<_>>().join(":")
        }
        _ => "<invalid>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_as_node_matches_them() {
        let host = |h: &str| h.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert!(check(&host("db.example.test"), "*.example.test"));
        assert!(check(&host("db1.example.test"), "db*.example.test"), "Node allows partial wildcards");
        assert!(!check(&host("a.b.example.test"), "*.example.test"));
        assert!(!check(&host("example.test"), "*.test"), "no *.tld");
        assert!(check(&host("localhost"), "LocalHost."));
        assert_eq!(openssl_ip(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), "0:0:0:0:0:0:0:1");
    }
}
