//! The oracle's certificates: keys of every kind, issued by a spec, CRLs and PEM bundles.

use std::process::Command;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, CrlNumber, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509CrlBuilder, X509NameBuilder, X509RevokedBuilder};

use crate::support;

/// A key and its certificate.
#[derive(Clone)]
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

pub fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

pub fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

/// What a certificate says. Defaults: v3, valid from yesterday for 30 days, no extensions.
#[derive(Clone, Default)]
pub struct Spec {
    pub cn: Option<&'static str>,
    pub dns: Vec<&'static str>,
    pub ips: Vec<&'static str>,
    pub ca: Option<bool>,
    pub pathlen: Option<u32>,
    pub key_usage: Option<KeyUsageSpec>,
    pub eku_server: Option<bool>,
    /// Days relative to now.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub v1: bool,
    pub name_constraint: Option<&'static str>,
    pub rsa: Option<u32>,
    pub key: KeyKind,
    /// Signed with SHA-1 instead of SHA-256.
    pub sha1: bool,
}

/// The subject's key, when not P-256 or plain RSA.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyKind {
    #[default]
    Default,
    Ed25519,
    Ed448,
    P521,
    /// An RSA-PSS key (`openssl genpkey -algorithm RSA-PSS`): what it signs carries RSASSA-PSS
    /// parameters.
    RsaPss,
}

pub fn rsa_pss_key() -> PKey<Private> {
    let out = support::run_ok(Command::new("openssl").args([
        "genpkey",
        "-algorithm",
        "RSA-PSS",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ]));
    PKey::private_key_from_pem(&out.stdout).unwrap()
}

#[derive(Clone, Copy)]
pub enum KeyUsageSpec {
    CaUsages,
    DigitalSignature,
    KeyCertSignOnly,
}

pub fn serial() -> Asn1Integer {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(100);
    BigNum::from_u32(N.fetch_add(1, Ordering::Relaxed)).unwrap().to_asn1_integer().unwrap()
}

pub fn days(d: i64) -> Asn1Time {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let now = i64::try_from(now).unwrap();
    Asn1Time::from_unix(now + d * 86_400).unwrap()
}

/// Issues `spec`, signed by `issuer` or self-signed.
#[allow(clippy::too_many_lines, reason = "one certificate, one extension after another")]
pub fn issue(spec: &Spec, issuer: Option<&Issued>) -> Issued {
    let key = match spec.key {
        KeyKind::Ed25519 => PKey::generate_ed25519().unwrap(),
        KeyKind::Ed448 => PKey::generate_ed448().unwrap(),
        KeyKind::P521 => {
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::SECP521R1).unwrap()).unwrap()).unwrap()
        }
        KeyKind::RsaPss => rsa_pss_key(),
        KeyKind::Default => spec.rsa.map_or_else(ec_key, rsa_key),
    };
    let mut name = X509NameBuilder::new().unwrap();
    if let Some(cn) = spec.cn {
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    } else {
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "launcher oracle").unwrap();
    }
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(if spec.v1 { 0 } else { 2 }).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name())).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&days(spec.not_before.unwrap_or(-1))).unwrap();
    b.set_not_after(&days(spec.not_after.unwrap_or(30))).unwrap();
    if !spec.v1 {
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ski).unwrap();
        if let Some(ca) = spec.ca {
            let mut bc = BasicConstraints::new();
            bc.critical();
            if ca {
                bc.ca();
            }
            if let Some(p) = spec.pathlen {
                bc.pathlen(p);
            }
            b.append_extension(bc.build().unwrap()).unwrap();
        }
        match spec.key_usage {
            Some(KeyUsageSpec::CaUsages) => {
                b.append_extension(
                    KeyUsage::new().critical().key_cert_sign().crl_sign().digital_signature().build().unwrap(),
                )
                .unwrap();
            }
            Some(KeyUsageSpec::DigitalSignature) => {
                b.append_extension(KeyUsage::new().critical().digital_signature().build().unwrap()).unwrap();
            }
            Some(KeyUsageSpec::KeyCertSignOnly) => {
                b.append_extension(KeyUsage::new().critical().key_cert_sign().build().unwrap()).unwrap();
            }
            None => {}
        }
        match spec.eku_server {
            Some(true) => b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap()).unwrap(),
            Some(false) => b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap()).unwrap(),
            None => {}
        }
        if !spec.dns.is_empty() || !spec.ips.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for d in &spec.dns {
                san.dns(d);
            }
            for ip in &spec.ips {
                san.ip(ip);
            }
            let ctx = b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None);
            let ext = san.build(&ctx).unwrap();
            b.append_extension(ext).unwrap();
        }
        if let Some(nc) = spec.name_constraint {
            #[allow(deprecated, reason = "the only way the openssl crate builds nameConstraints")]
            let ext = openssl::x509::X509Extension::new_nid(None, None, Nid::NAME_CONSTRAINTS, nc).unwrap();
            b.append_extension(ext).unwrap();
        }
    }
    let signer = issuer.map_or(&key, |i| &i.key);
    let digest = if matches!(signer.id(), openssl::pkey::Id::ED25519 | openssl::pkey::Id::ED448) {
        MessageDigest::null()
    } else if spec.sha1 {
        MessageDigest::sha1()
    } else {
        MessageDigest::sha256()
    };
    b.sign(signer, digest).unwrap();
    Issued { cert: b.build(), key }
}

pub fn ca(cn: &'static str) -> Issued {
    issue(&Spec { cn: Some(cn), ca: Some(true), key_usage: Some(KeyUsageSpec::CaUsages), ..Spec::default() }, None)
}

pub fn leaf(issuer: &Issued, spec: &Spec) -> Issued {
    issue(spec, Some(issuer))
}

pub fn localhost() -> Spec {
    Spec { cn: Some("localhost"), dns: vec!["localhost"], ..Spec::default() }
}

/// A CRL by `issuer` revoking `revoked`, valid for `next_update` days.
pub fn crl(issuer: &Issued, revoked: &[&X509], next_update: i64) -> Vec<u8> {
    let mut b = X509CrlBuilder::new().unwrap();
    b.set_issuer_name(issuer.cert.subject_name()).unwrap();
    // rust-openssl insists on an authorityKeyIdentifier; a scratch builder supplies the context.
    let scratch = X509Builder::new().unwrap();
    let aki =
        AuthorityKeyIdentifier::new().keyid(true).build(&scratch.x509v3_context(Some(&issuer.cert), None)).unwrap();
    b.append_extension(aki).unwrap();
    b.append_extension(CrlNumber::new(BigNum::from_u32(1).unwrap()).unwrap().build().unwrap()).unwrap();
    b.set_last_update(&days(-1)).unwrap();
    b.set_next_update(&days(next_update)).unwrap();
    for cert in revoked {
        let mut r = X509RevokedBuilder::new().unwrap();
        r.set_serial_number(cert.serial_number()).unwrap();
        r.set_revocation_date(&days(-1)).unwrap();
        b.add_revoked(r.build()).unwrap();
    }
    b.sign(&issuer.key, MessageDigest::sha256()).unwrap();
    b.build().unwrap().to_pem().unwrap()
}

pub fn pem(certs: &[&X509]) -> Vec<u8> {
    certs.iter().flat_map(|c| c.to_pem().unwrap()).collect()
}
