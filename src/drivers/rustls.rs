//! rustls (sqlx with rustls, tokio-postgres-rustls, examples/rustls): the chain is judged by
//! rustls's own `WebPkiServerVerifier` (rustls-webpki) with rustls's default provider, aws-lc-rs,
//! built exactly as an app builds it from PGSSLROOTCERT (`RootCertStore::add_parsable_certificates`):
//! the same library, so the same verdict on the chain and the name. What the verifier does not
//! see is the handshake's own signature: a server key rustls cannot verify a signature of
//! (Ed448, an RSASSA-PSS key, RSA under 2048 bits) fails the handshake, as the real app shows
//! in tests/oracle.rs.

use std::sync::Arc;

use openssl::pkey::Id;
use openssl::x509::X509;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::Refusal;

pub(super) fn judge(served: &[X509], host: &str, root_pem: &[u8]) -> Result<(), Refusal> {
    let Some((leaf, rest)) = served.split_first() else { return Ok(()) };
    let refuse = |why: String, fix: &str| Refusal { driver: "rustls", why, fix: fix.to_owned() };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(CertificateDer::pem_slice_iter(root_pem).filter_map(Result::ok));
    if added == 0 {
        return Err(refuse(
            "PGSSLROOTCERT holds no certificate rustls can use as a root".into(),
            "write the CA as a PEM \"BEGIN CERTIFICATE\" block (rustls reads no other kind)",
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let Ok(verifier) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build() else {
        return Ok(());
    };
    let der = |c: &X509| CertificateDer::from(c.to_der().unwrap_or_default());
    let intermediates: Vec<_> = rest.iter().map(der).collect();
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return Err(refuse(
            format!("invalid dns name: {host}"),
            "give PGHOST as a host name or an IP address rustls can parse",
        ));
    };
    if let Err(e) = verifier.verify_server_cert(&der(leaf), &intermediates, &name, &[], UnixTime::now()) {
        // As rustls's apps print it (`Display`), which names the webpki error; but the list of
        // every OID rustls supports, which says nothing a reader can use, gives way to the
        // algorithm's name.
        let mut why = e.to_string();
        if let rustls::Error::InvalidCertificate(rustls::CertificateError::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id,
            ..
        }) = &e
        {
            let name = why.split_once(" {").map_or(why.as_str(), |(name, _)| name);
            why = format!("{name} ({})", algorithm_name(signature_algorithm_id));
        }
        return Err(refuse(why.clone(), fix(&why)));
    }
    handshake_signature(leaf).map_err(|(why, fix)| refuse(why.into(), fix))
}

/// The name of the algorithm whose DER (`OBJECT IDENTIFIER`, then its parameters) rustls names.
fn algorithm_name(der: &[u8]) -> String {
    let oid = match der {
        [6, len, rest @ ..] if usize::from(*len) <= rest.len() => &rest[..usize::from(*len)],
        _ => return "an unknown algorithm".into(),
    };
    let mut arcs: Vec<u64> = Vec::new();
    let mut arc = 0u64;
    for byte in oid {
        arc = (arc << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = arc.min(80) / 40;
                arcs.extend([first, arc - first * 40]);
            } else {
                arcs.push(arc);
            }
            arc = 0;
        }
    }
    let dotted = arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
    openssl::asn1::Asn1Object::from_str(&dotted)
        .ok()
        .and_then(|o| o.nid().long_name().ok().map(str::to_owned))
        .unwrap_or(dotted)
}

/// How to fix the certificate, by what rustls said.
fn fix(why: &str) -> &'static str {
    const FIXES: &[(&str, &str)] = &[
        (
            "not valid for name",
            "rustls matches only subjectAltName entries, never the CN: re-issue the certificate with a \
             subjectAltName for the host the app dials",
        ),
        (
            "CaUsedAsEndEntity",
            "rustls refuses a CA certificate (basicConstraints CA:TRUE) as the server's: issue the server a leaf \
             certificate (CA:FALSE) signed by the CA",
        ),
        (
            "UnsupportedCertVersion",
            "rustls accepts only X.509 v3 certificates: re-issue the certificate as v3 (with extensions)",
        ),
        (
            "UnknownIssuer",
            "the chain must lead to a certificate in PGSSLROOTCERT: send the intermediates, trust the root",
        ),
        (
            "BadSignature",
            "rustls verifies RSA signatures only from keys of 2048 bits or more, the server's and each issuer's: \
             re-issue with larger keys",
        ),
        (
            "UnsupportedSignatureAlgorithm",
            "rustls verifies no SHA-1 or MD5 signature, and RSASSA-PSS only with the salt as long as the hash: sign \
             with SHA-256 or better (-sigopt rsa_pss_saltlen:digest for PSS)",
        ),
        ("expired", "renew the certificate"),
        ("not valid yet", "check the clocks, or re-issue the certificate"),
        ("purpose", "rustls needs extendedKeyUsage serverAuth (or none): re-issue the certificate with it"),
    ];
    FIXES.iter().find(|(said, _)| why.contains(said)).map_or(
        "re-issue the certificate as rustls-webpki requires (X.509 v3, subjectAltName, CA:FALSE leaf, SHA-256 or better)",
        |(_, fix)| fix,
    )
}

/// What rustls (aws-lc-rs) cannot verify the server's handshake signature with.
fn handshake_signature(leaf: &X509) -> Result<(), (&'static str, &'static str)> {
    let Ok(key) = leaf.public_key() else { return Ok(()) };
    match key.id() {
        Id::ED448 => Err((
            "received fatal alert: HandshakeFailure",
            "rustls has no Ed448: give the server an ECDSA, Ed25519 or RSA (2048 bits or more) key",
        )),
        Id::RSA_PSS => Err((
            "received fatal alert: HandshakeFailure",
            "rustls cannot use an RSASSA-PSS key (OID id-RSASSA-PSS): give the server an rsaEncryption RSA key",
        )),
        Id::RSA if key.bits() < 2048 => Err((
            "invalid peer certificate: BadSignature",
            "rustls verifies RSA signatures only from keys of 2048 bits or more: give the server a larger key",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_algorithm_rustls_gives_as_der() {
        // As rustls reported them against real servers (tests/oracle.rs).
        assert_eq!(super::algorithm_name(&[6, 7, 42, 134, 72, 206, 61, 4, 1]), "ecdsa-with-SHA1");
        assert_eq!(super::algorithm_name(&[6, 9, 42, 134, 72, 134, 247, 13, 1, 1, 10, 48, 0]), "rsassaPss");
        assert_eq!(super::algorithm_name(&[4, 1, 0]), "an unknown algorithm");
    }
}
