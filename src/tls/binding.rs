//! SCRAM's channel binding data (`tls-server-end-point`), made as libpq's
//! `pgtls_get_peer_certificate_hash` makes it. The RSASSA-PSS digest is read from the
//! certificate's DER: rust-openssl has no binding for `X509_get_signature_info`, which libpq
//! calls, and this crate has no unsafe code.

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::X509Ref;

/// The `tls-server-end-point` channel binding data of the server's certificate, as libpq's
/// `pgtls_get_peer_certificate_hash` makes it: the certificate hashed with the digest of its
/// signature (`X509_get_signature_info`, which reads RSASSA-PSS parameters), SHA-256 for MD5 and
/// SHA-1. Where libpq finds no digest (an Ed25519 signature), its error instead.
pub(crate) fn end_point(cert: &X509Ref, der: &[u8]) -> Result<Vec<u8>, String> {
    let undetermined = || "could not determine server certificate signature algorithm".to_owned();
    let signature = cert.signature_algorithm().object().nid();
    let digest = if signature == Nid::RSASSAPSS {
        pss_hash(der).and_then(pss_digest).ok_or_else(undetermined)?
    } else {
        signature.signature_algorithms().ok_or_else(undetermined)?.digest
    };
    let md = match digest {
        Nid::MD5 | Nid::SHA1 => MessageDigest::sha256(),
        other => MessageDigest::from_nid(other)
            .ok_or_else(|| format!("could not find digest for NID {}", other.short_name().unwrap_or("UNDEF")))?,
    };
    cert.digest(md).map(|d| d.to_vec()).map_err(|e| e.to_string())
}

/// The SHA-1 and SHA-2 hashes RSASSA-PSS parameters name, by the DER contents of their OIDs.
fn pss_digest(oid: &[u8]) -> Option<Nid> {
    const NIST_HASH: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
    if oid == SHA1_OID {
        return Some(Nid::SHA1);
    }
    match oid.strip_prefix(NIST_HASH)? {
        [1] => Some(Nid::SHA256),
        [2] => Some(Nid::SHA384),
        [3] => Some(Nid::SHA512),
        [4] => Some(Nid::SHA224),
        _ => None,
    }
}

/// The hash an RSASSA-PSS signature on a DER certificate uses (rust-openssl has no binding for
/// `X509_get_signature_info`, which libpq calls, and this crate has no unsafe code): the hashAlgorithm in the
/// parameters of the certificate's (outer) signatureAlgorithm, as the OID's DER contents
/// ([`SHA1_OID`], the default, when the parameters do not say). `None` when `der` is not shaped
/// like a certificate.
fn pss_hash(der: &[u8]) -> Option<&[u8]> {
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

/// Whether an RSASSA-PSS signature's parameters are ones Go verifies (`x509.go`,
/// `getSignatureAlgorithmFromAI`): SHA-256, SHA-384 or SHA-512 with a salt as long as the hash.
pub(crate) fn pss_salt_is_hash_length(der: &[u8]) -> bool {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let params = (|| {
        let (SEQUENCE, certificate, _) = tlv(der)? else { return None };
        let (SEQUENCE, _, rest) = tlv(certificate)? else { return None };
        let (SEQUENCE, algorithm, _) = tlv(rest)? else { return None };
        let (OID, _, params) = tlv(algorithm)? else { return None };
        let (SEQUENCE, params, _) = tlv(params)? else { return None };
        Some(params)
    })();
    let Some(mut params) = params else { return false };
    let mut salt: u64 = 20;
    while let Some((tag, contents, rest)) = tlv(params) {
        if tag == 0xa2
            && let Some((0x02, int, _)) = tlv(contents)
        {
            salt = int.iter().fold(0, |n, b| n << 8 | u64::from(*b));
        }
        params = rest;
    }
    let expected = match pss_hash(der).and_then(pss_digest) {
        Some(Nid::SHA256) => 32,
        Some(Nid::SHA384) => 48,
        Some(Nid::SHA512) => 64,
        _ => return false,
    };
    salt == expected
}

/// The DER contents of SHA-1's OID, 1.3.14.3.2.26.
const SHA1_OID: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];

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
    use openssl::pkey::{PKey, Private};
    use openssl::x509::{X509, X509Builder, X509NameBuilder};

    use super::*;

    fn signed(key: &PKey<Private>, digest: MessageDigest) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "db.example").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(3).unwrap()).unwrap();
        b.sign(key, digest).unwrap();
        b.build()
    }

    #[test]
    fn end_point_hashes_with_the_signature_digest_as_libpq_does() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        for (digest, expected) in [
            (MessageDigest::sha384(), MessageDigest::sha384()),
            (MessageDigest::sha512(), MessageDigest::sha512()),
            (MessageDigest::sha1(), MessageDigest::sha256()),
        ] {
            let cert = signed(&rsa, digest);
            let der = cert.to_der().unwrap();
            assert_eq!(end_point(&cert, &der), Ok(openssl::hash::hash(expected, &der).unwrap().to_vec()));
        }
        let ed = PKey::generate_ed25519().unwrap();
        let cert = signed(&ed, MessageDigest::null());
        assert_eq!(end_point(&cert, &cert.to_der().unwrap()), Err("could not find digest for NID UNDEF".to_owned()));
    }

    #[test]
    fn pss_parameters_name_the_hash() {
        // AlgorithmIdentifier { id-RSASSA-PSS, { [0] { sha384 }, … } } inside a skeleton certificate.
        let sha384 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
        let hash = [&[0xa0, 0x0d, 0x30, 0x0b, 0x06, 0x09][..], &sha384].concat();
        let params = [&[0x30, 0x0f][..], &hash].concat();
        let pss_oid = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
        let algorithm = [&[0x30, 0x1c][..], &pss_oid, &params].concat();
        let tbs = [0x30, 0x00];
        let cert = [&[0x30, 0x20][..], &tbs, &algorithm].concat();
        assert_eq!(pss_hash(&cert), Some(&sha384[..]));
        assert_eq!(pss_digest(&sha384), Some(Nid::SHA384));
        let defaults = [&[0x30, 0x11][..], &tbs, &[0x30, 0x0d][..], &pss_oid, &[0x30, 0x00][..]].concat();
        assert_eq!(pss_hash(&defaults), Some(SHA1_OID));
        assert_eq!(pss_hash(&cert[..cert.len() - 3]), None);
    }
}
