//! The oracle: for each certificate case, a real PostgreSQL serves the certificate and both
//! `psql` (libpq, `sslmode=verify-full`; Debian 12's 15, and 17 and 18 from PyPI, which must all
//! agree) and `launcher check` run under the same environment.
//! Any disagreement on the verdict fails the test, and so does a libpq TLS refusal whose
//! words the launcher does not repeat. The table is printed either way.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

use crate::support::{self, Pg, Run, canary, launcher, pg::psql, services, unique};

/// A key and its certificate.
#[derive(Clone)]
struct Issued {
    cert: X509,
    key: PKey<Private>,
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

/// What a certificate says. Defaults: v3, valid from yesterday for 30 days, no extensions.
#[derive(Clone, Default)]
struct Spec {
    cn: Option<&'static str>,
    dns: Vec<&'static str>,
    ips: Vec<&'static str>,
    ca: Option<bool>,
    pathlen: Option<u32>,
    key_usage: Option<KeyUsageSpec>,
    eku_server: Option<bool>,
    /// Days relative to now.
    not_before: Option<i64>,
    not_after: Option<i64>,
    v1: bool,
    name_constraint: Option<&'static str>,
    rsa: Option<u32>,
    key: KeyKind,
    /// Signed with SHA-1 instead of SHA-256.
    sha1: bool,
}

/// The subject's key, when not P-256 or plain RSA.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum KeyKind {
    #[default]
    Default,
    Ed25519,
    Ed448,
    P521,
    /// An RSA-PSS key (`openssl genpkey -algorithm RSA-PSS`): what it signs carries RSASSA-PSS
    /// parameters.
    RsaPss,
}

fn rsa_pss_key() -> PKey<Private> {
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
enum KeyUsageSpec {
    CaUsages,
    DigitalSignature,
    KeyCertSignOnly,
}

fn serial() -> Asn1Integer {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(100);
    BigNum::from_u32(N.fetch_add(1, Ordering::Relaxed)).unwrap().to_asn1_integer().unwrap()
}

fn days(d: i64) -> Asn1Time {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let now = i64::try_from(now).unwrap();
    Asn1Time::from_unix(now + d * 86_400).unwrap()
}

/// Issues `spec`, signed by `issuer` or self-signed.
#[allow(clippy::too_many_lines, reason = "one certificate, one extension after another")]
fn issue(spec: &Spec, issuer: Option<&Issued>) -> Issued {
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

fn ca(cn: &'static str) -> Issued {
    issue(&Spec { cn: Some(cn), ca: Some(true), key_usage: Some(KeyUsageSpec::CaUsages), ..Spec::default() }, None)
}

fn leaf(issuer: &Issued, spec: &Spec) -> Issued {
    issue(spec, Some(issuer))
}

fn localhost() -> Spec {
    Spec { cn: Some("localhost"), dns: vec!["localhost"], ..Spec::default() }
}

/// A CRL by `issuer` revoking `revoked`, valid for `next_update` days.
fn crl(issuer: &Issued, revoked: &[&X509], next_update: i64) -> Vec<u8> {
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

fn pem(certs: &[&X509]) -> Vec<u8> {
    certs.iter().flat_map(|c| c.to_pem().unwrap()).collect()
}

/// The root file libpq is given.
enum Root {
    Certs(Vec<X509>),
    Missing,
    Bytes(&'static [u8]),
    /// No PGSSLROOTCERT: `~/.postgresql/root.crt` holds these.
    HomeDefault(Vec<X509>),
    /// A "TRUSTED CERTIFICATE" with OpenSSL's auxiliary trust settings (`openssl x509 -trustout`
    /// and this option, e.g. `-addreject serverAuth`).
    Trusted(X509, [&'static str; 2]),
}

/// Revocation lists.
enum Crl {
    None,
    File(Vec<u8>),
    Dir(Vec<u8>),
    /// `~/.postgresql/root.crl`.
    HomeDefault(Vec<u8>),
    MissingFile,
    /// `PGSSLCRLDIR` names a directory that does not exist.
    MissingDir,
    /// Both `PGSSLCRL` and `PGSSLCRLDIR` name what does not exist.
    MissingFileAndDir,
}

struct Case {
    name: String,
    /// What the server sends: leaf first.
    served: Vec<X509>,
    key: PKey<Private>,
    root: Root,
    crl: Crl,
    host: String,
    hostaddr: Option<IpAddr>,
    /// The clients' OpenSSL security level, when not the system's (an `OPENSSL_CONF` for both).
    seclevel: Option<u8>,
}

/// An OpenSSL configuration that sets the default security level to `level`.
fn seclevel_conf(level: u8) -> String {
    format!(
        "openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n\
         system_default = system_default_sect\n[system_default_sect]\nCipherString = DEFAULT:@SECLEVEL={level}\n"
    )
}

impl Case {
    fn new(name: &str, served: &Issued, chain: &[&Issued], root: Root) -> Self {
        Self {
            name: name.to_owned(),
            served: std::iter::once(served.cert.clone()).chain(chain.iter().map(|c| c.cert.clone())).collect(),
            key: served.key.clone(),
            root,
            crl: Crl::None,
            host: "localhost".to_owned(),
            hostaddr: None,
            seclevel: None,
        }
    }

    fn seclevel(mut self, level: u8) -> Self {
        self.seclevel = Some(level);
        self
    }

    fn host(mut self, host: &str) -> Self {
        host.clone_into(&mut self.host);
        self
    }

    /// Connect to 127.0.0.1 while checking the certificate against `host`.
    fn named(mut self, host: &str) -> Self {
        host.clone_into(&mut self.host);
        self.hostaddr = Some("127.0.0.1".parse().unwrap());
        self
    }

    fn crl(mut self, crl: Crl) -> Self {
        self.crl = crl;
        self
    }
}

#[allow(clippy::too_many_lines, reason = "the table of cases")]
fn cases() -> Vec<Case> {
    let root = ca("oracle root");
    let other = ca("unrelated root");
    let roots = |c: &[&Issued]| Root::Certs(c.iter().map(|i| i.cert.clone()).collect());
    let mut v = Vec::new();

    // Host names against SANs and the CN.
    let plain = leaf(&root, &localhost());
    v.push(Case::new("SAN DNS:localhost", &plain, &[], roots(&[&root])));
    v.push(Case::new("host in other case", &plain, &[], roots(&[&root])).host("LOCALHOST"));
    let upper = leaf(&root, &Spec { dns: vec!["LocalHost"], ..Spec::default() });
    v.push(Case::new("SAN in other case", &upper, &[], roots(&[&root])));
    let elsewhere = leaf(&root, &Spec { cn: Some("localhost"), dns: vec!["db.example.test"], ..Spec::default() });
    v.push(Case::new("SAN elsewhere, CN matches (CN ignored)", &elsewhere, &[], roots(&[&root])));
    let cn_only = leaf(&root, &Spec { cn: Some("localhost"), ..Spec::default() });
    v.push(Case::new("CN only", &cn_only, &[], roots(&[&root])));
    v.push(Case::new("CN only, other host", &cn_only, &[], roots(&[&root])).named("db.example.test"));
    let ip_cn = leaf(&root, &Spec { cn: Some("127.0.0.1"), dns: vec!["db.example.test"], ..Spec::default() });
    v.push(Case::new("IP host, DNS SAN only, CN is the IP", &ip_cn, &[], roots(&[&root])).host("127.0.0.1"));
    let ip_san = leaf(&root, &Spec { cn: Some("localhost"), ips: vec!["127.0.0.1"], ..Spec::default() });
    v.push(Case::new("SAN IP:127.0.0.1", &ip_san, &[], roots(&[&root])).host("127.0.0.1"));
    v.push(Case::new("DNS host, IP SAN only, CN matches", &ip_san, &[], roots(&[&root])));
    let ip_other = leaf(&root, &Spec { cn: Some("127.0.0.1"), ips: vec!["127.0.0.2"], ..Spec::default() });
    v.push(Case::new("IP SAN elsewhere, CN is the IP", &ip_other, &[], roots(&[&root])).host("127.0.0.1"));
    v.push(Case::new("IP host in inet_aton form 127.1", &ip_san, &[], roots(&[&root])).named("127.1"));
    v.push(Case::new("IP host in hex form", &ip_san, &[], roots(&[&root])).named("0x7f.0.0.1"));
    let v6 = leaf(&root, &Spec { ips: vec!["::1"], ..Spec::default() });
    v.push(Case::new("SAN IP:::1", &v6, &[], roots(&[&root])).named("::1"));
    v.push(Case::new("SAN IP:::1, host 0:0::1", &v6, &[], roots(&[&root])).named("0:0::1"));
    let several =
        leaf(&root, &Spec { dns: vec!["a.example.test", "b.example.test"], ips: vec!["10.0.0.1"], ..Spec::default() });
    v.push(Case::new("three names, none match", &several, &[], roots(&[&root])));
    v.push(Case::new("second SAN matches", &several, &[], roots(&[&root])).named("b.example.test"));
    let wild = leaf(&root, &Spec { dns: vec!["*.example.test"], ..Spec::default() });
    v.push(Case::new("wildcard, one label", &wild, &[], roots(&[&root])).named("db.example.test"));
    v.push(Case::new("wildcard, two labels", &wild, &[], roots(&[&root])).named("a.b.example.test"));
    v.push(Case::new("wildcard, bare domain", &wild, &[], roots(&[&root])).named("example.test"));
    let partial = leaf(&root, &Spec { dns: vec!["db*.example.test"], ..Spec::default() });
    v.push(Case::new("partial-label wildcard", &partial, &[], roots(&[&root])).named("db1.example.test"));
    v.push(Case::new("host with trailing dot", &plain, &[], roots(&[&root])).named("localhost."));
    let dotted = leaf(&root, &Spec { dns: vec!["localhost."], ..Spec::default() });
    v.push(Case::new("SAN with trailing dot", &dotted, &[], roots(&[&root])));
    let none = leaf(&root, &Spec::default());
    v.push(Case::new("no names at all", &none, &[], roots(&[&root])));

    // Chains and trust.
    v.push(Case::new("signed by another CA", &plain, &[], roots(&[&other])));
    v.push(Case::new("root file with several CAs", &plain, &[], roots(&[&other, &root])));
    let article = issue(&Spec { cn: Some("localhost"), ca: Some(true), rsa: Some(2048), ..Spec::default() }, None);
    v.push(Case::new(
        "self-signed CA:TRUE, its own root (article)",
        &article,
        &[],
        Root::Certs(vec![article.cert.clone()]),
    ));
    v.push(Case::new("self-signed, not in the root file", &article, &[], roots(&[&root])));
    let self_leaf = issue(&Spec { cn: Some("localhost"), ..Spec::default() }, None);
    v.push(Case::new(
        "self-signed without extensions, its own root",
        &self_leaf,
        &[],
        Root::Certs(vec![self_leaf.cert.clone()]),
    ));
    v.push(Case::new(
        "leaf itself in the root file (not self-signed)",
        &plain,
        &[],
        Root::Certs(vec![plain.cert.clone()]),
    ));
    let inter = leaf(
        &root,
        &Spec {
            cn: Some("oracle intermediate"),
            ca: Some(true),
            key_usage: Some(KeyUsageSpec::CaUsages),
            ..Spec::default()
        },
    );
    let via = leaf(&inter, &localhost());
    v.push(Case::new("intermediate sent by the server", &via, &[&inter], roots(&[&root])));
    v.push(Case::new("intermediate missing", &via, &[], roots(&[&root])));
    v.push(Case::new("intermediate in the root file", &via, &[], roots(&[&root, &inter])));
    v.push(Case::new("only the intermediate in the root file", &via, &[&inter], roots(&[&inter])));
    let not_ca = leaf(&root, &Spec { cn: Some("not a CA"), ca: Some(false), ..Spec::default() });
    let via_not_ca = leaf(&not_ca, &localhost());
    v.push(Case::new("issuer with CA:FALSE", &via_not_ca, &[&not_ca], roots(&[&root])));
    let no_bc = leaf(&root, &Spec { cn: Some("no basicConstraints"), ..Spec::default() });
    let via_no_bc = leaf(&no_bc, &localhost());
    v.push(Case::new("issuer without basicConstraints", &via_no_bc, &[&no_bc], roots(&[&root])));
    let short = issue(&Spec { cn: Some("pathlen 0 root"), ca: Some(true), pathlen: Some(0), ..Spec::default() }, None);
    let short_inter = leaf(&short, &Spec { cn: Some("under pathlen 0"), ca: Some(true), ..Spec::default() });
    let via_short = leaf(&short_inter, &localhost());
    v.push(Case::new("pathlen:0 exceeded", &via_short, &[&short_inter], roots(&[&short])));
    let v1_root = issue(&Spec { cn: Some("v1 root"), v1: true, ..Spec::default() }, None);
    let via_v1 = leaf(&v1_root, &localhost());
    v.push(Case::new("X.509 v1 root", &via_v1, &[], roots(&[&v1_root])));
    let v1_leaf = leaf(&root, &Spec { cn: Some("localhost"), v1: true, ..Spec::default() });
    v.push(Case::new("X.509 v1 leaf (CN only)", &v1_leaf, &[], roots(&[&root])));
    let ca_leaf = leaf(&root, &Spec { ca: Some(true), ..localhost() });
    v.push(Case::new("leaf with CA:TRUE", &ca_leaf, &[], roots(&[&root])));
    let constrained = issue(
        &Spec {
            cn: Some("constrained root"),
            ca: Some(true),
            name_constraint: Some("critical,permitted;DNS:.example.test"),
            ..Spec::default()
        },
        None,
    );
    let outside = leaf(&constrained, &localhost());
    v.push(Case::new("name constraints violated", &outside, &[], roots(&[&constrained])));
    let inside = leaf(&constrained, &Spec { dns: vec!["db.example.test"], ..Spec::default() });
    v.push(Case::new("name constraints respected", &inside, &[], roots(&[&constrained])).named("db.example.test"));
    let rsa_leaf = leaf(&root, &Spec { rsa: Some(2048), ..localhost() });
    v.push(Case::new("RSA-2048 leaf", &rsa_leaf, &[], roots(&[&root])));
    let ed_leaf = leaf(&root, &Spec { key: KeyKind::Ed25519, ..localhost() });
    v.push(Case::new("Ed25519 leaf key", &ed_leaf, &[], roots(&[&root])));
    // Keys ring cannot verify a handshake signature with, which OpenSSL (libpq) can.
    let p521_leaf = leaf(&root, &Spec { key: KeyKind::P521, ..localhost() });
    v.push(Case::new("P-521 leaf key", &p521_leaf, &[], roots(&[&root])));
    let ed448_leaf = leaf(&root, &Spec { key: KeyKind::Ed448, ..localhost() });
    v.push(Case::new("Ed448 leaf key", &ed448_leaf, &[], roots(&[&root])));
    let pss_leaf = leaf(&root, &Spec { key: KeyKind::RsaPss, ..localhost() });
    v.push(Case::new("RSA-PSS leaf key", &pss_leaf, &[], roots(&[&root])));
    // OpenSSL's security level (2 in Debian's openssl.cnf) refuses small keys and SHA-1
    // signatures; a system that lowers it (OPENSSL_CONF here) lets libpq accept them. The
    // server runs at level 0, so that it serves them at all.
    let small_leaf = leaf(&root, &Spec { rsa: Some(1024), ..localhost() });
    v.push(Case::new("RSA-1024 leaf", &small_leaf, &[], roots(&[&root])));
    v.push(Case::new("RSA-1024 leaf, security level 1", &small_leaf, &[], roots(&[&root])).seclevel(1));
    let sha1_leaf = leaf(&root, &Spec { sha1: true, ..localhost() });
    v.push(Case::new("leaf signed with SHA-1", &sha1_leaf, &[], roots(&[&root])));
    v.push(Case::new("leaf signed with SHA-1, security level 1", &sha1_leaf, &[], roots(&[&root])).seclevel(1));
    v.push(Case::new("leaf signed with SHA-1, security level 0", &sha1_leaf, &[], roots(&[&root])).seclevel(0));
    let small_root = issue(
        &Spec {
            cn: Some("oracle RSA-1024 root"),
            ca: Some(true),
            key_usage: Some(KeyUsageSpec::CaUsages),
            rsa: Some(1024),
            ..Spec::default()
        },
        None,
    );
    let under_small = leaf(&small_root, &localhost());
    v.push(Case::new("RSA-1024 root", &under_small, &[], roots(&[&small_root])));
    v.push(Case::new("RSA-1024 root, security level 1", &under_small, &[], roots(&[&small_root])).seclevel(1));

    // Signature algorithms, which also pick the digest of SCRAM's channel binding.
    let ca_spec = |cn, key| Spec {
        cn: Some(cn),
        ca: Some(true),
        key_usage: Some(KeyUsageSpec::CaUsages),
        key,
        ..Spec::default()
    };
    let pss_root = issue(&ca_spec("oracle RSA-PSS root", KeyKind::RsaPss), None);
    let pss_signed = leaf(&pss_root, &localhost());
    v.push(Case::new("leaf signed with RSASSA-PSS", &pss_signed, &[], roots(&[&pss_root])));
    let ed_root = issue(&ca_spec("oracle Ed25519 root", KeyKind::Ed25519), None);
    let ed_signed = leaf(&ed_root, &localhost());
    v.push(Case::new("leaf signed with Ed25519 (no digest to bind with)", &ed_signed, &[], roots(&[&ed_root])));

    // Dates.
    let expired = leaf(&root, &Spec { not_before: Some(-10), not_after: Some(-1), ..localhost() });
    v.push(Case::new("leaf expired", &expired, &[], roots(&[&root])));
    let future = leaf(&root, &Spec { not_before: Some(2), not_after: Some(30), ..localhost() });
    v.push(Case::new("leaf not yet valid", &future, &[], roots(&[&root])));
    let old_root = issue(
        &Spec {
            cn: Some("expired root"),
            ca: Some(true),
            not_before: Some(-10),
            not_after: Some(-1),
            ..Spec::default()
        },
        None,
    );
    let via_old_root = leaf(&old_root, &localhost());
    v.push(Case::new("root expired", &via_old_root, &[], roots(&[&old_root])));
    let old_inter = leaf(
        &root,
        &Spec {
            cn: Some("expired intermediate"),
            ca: Some(true),
            not_before: Some(-10),
            not_after: Some(-1),
            ..Spec::default()
        },
    );
    let via_old_inter = leaf(&old_inter, &localhost());
    v.push(Case::new("intermediate expired", &via_old_inter, &[&old_inter], roots(&[&root])));

    // Key usage and extended key usage.
    let eku_server = leaf(&root, &Spec { eku_server: Some(true), ..localhost() });
    v.push(Case::new("EKU serverAuth", &eku_server, &[], roots(&[&root])));
    let eku_client = leaf(&root, &Spec { eku_server: Some(false), ..localhost() });
    v.push(Case::new("EKU clientAuth only", &eku_client, &[], roots(&[&root])));
    let ku_sig = leaf(&root, &Spec { key_usage: Some(KeyUsageSpec::DigitalSignature), ..localhost() });
    v.push(Case::new("KU digitalSignature", &ku_sig, &[], roots(&[&root])));
    let ku_bad = leaf(&root, &Spec { key_usage: Some(KeyUsageSpec::KeyCertSignOnly), ..localhost() });
    v.push(Case::new("KU keyCertSign only", &ku_bad, &[], roots(&[&root])));

    // Revocation.
    v.push(Case::new("CRL revokes the leaf", &plain, &[], roots(&[&root])).crl(Crl::File(crl(
        &root,
        &[&plain.cert],
        30,
    ))));
    v.push(Case::new("CRL revokes another cert", &plain, &[], roots(&[&root])).crl(Crl::File(crl(
        &root,
        &[&rsa_leaf.cert],
        30,
    ))));
    v.push(Case::new("CRL expired", &plain, &[], roots(&[&root])).crl(Crl::File(crl(&root, &[], -1))));
    v.push(Case::new("CRL of another CA only", &plain, &[], roots(&[&root])).crl(Crl::File(crl(&other, &[], 30))));
    v.push(
        Case::new("CRL for the root only, leaf under an intermediate", &via, &[&inter], roots(&[&root]))
            .crl(Crl::File(crl(&root, &[], 30))),
    );
    let mut both = crl(&root, &[], 30);
    both.extend(crl(&inter, &[&via.cert], 30));
    v.push(
        Case::new("CRLs for root and intermediate, leaf revoked", &via, &[&inter], roots(&[&root]))
            .crl(Crl::File(both)),
    );
    v.push(Case::new("CRL directory revokes the leaf", &plain, &[], roots(&[&root])).crl(Crl::Dir(crl(
        &root,
        &[&plain.cert],
        30,
    ))));
    v.push(
        Case::new("~/.postgresql/root.crl revokes the leaf", &plain, &[], roots(&[&root])).crl(Crl::HomeDefault(crl(
            &root,
            &[&plain.cert],
            30,
        ))),
    );
    v.push(Case::new("PGSSLCRL names a missing file", &plain, &[], roots(&[&root])).crl(Crl::MissingFile));
    // libpq's X509_STORE_load_locations quirks: a directory is only searched once a CRL is
    // wanted, so a missing one turns CRL checking on and every verification fails; but a file
    // that loads nothing stops the call before the directory is added.
    v.push(Case::new("PGSSLCRLDIR names a missing directory", &plain, &[], roots(&[&root])).crl(Crl::MissingDir));
    v.push(
        Case::new("PGSSLCRL and PGSSLCRLDIR both missing", &plain, &[], roots(&[&root])).crl(Crl::MissingFileAndDir),
    );
    // The file is read for certificates and CRLs alike: a certificate alone turns CRL checking
    // on (and finds no CRL); a CA certificate there with its CRL is trusted as a root.
    v.push(
        Case::new("PGSSLCRL holds a certificate, no CRL", &plain, &[], roots(&[&root]))
            .crl(Crl::File(pem(&[&root.cert]))),
    );
    let mut anchor = pem(&[&root.cert]);
    anchor.extend(crl(&root, &[], 30));
    v.push(
        Case::new("PGSSLCRL holds the leaf's CA and its CRL, the root file another CA", &plain, &[], roots(&[&other]))
            .crl(Crl::File(anchor)),
    );

    // Trust settings a root can carry in the file: libpq's OpenSSL honours them for a server.
    let trusted = |option, purpose| Root::Trusted(root.cert.clone(), [option, purpose]);
    v.push(Case::new("root trusted for serverAuth only", &plain, &[], trusted("-addtrust", "serverAuth")));
    v.push(Case::new("root trusted for clientAuth only", &plain, &[], trusted("-addtrust", "clientAuth")));
    v.push(Case::new("root rejected for serverAuth", &plain, &[], trusted("-addreject", "serverAuth")));

    // The root file itself.
    v.push(Case::new("root file missing", &plain, &[], Root::Missing));
    v.push(Case::new("root file not PEM", &plain, &[], Root::Bytes(b"not a certificate\n")));
    v.push(Case::new("root file empty", &plain, &[], Root::Bytes(b"")));
    v.push(Case::new("~/.postgresql/root.crt by default", &plain, &[], Root::HomeDefault(vec![root.cert.clone()])));
    v
}

/// One side's verdict.
struct Verdict {
    ok: bool,
    reason: String,
}

/// The cluster the oracle swaps certificates on.
struct Server {
    pg: Pg,
    tls_dir: PathBuf,
}

impl Server {
    fn serve(&self, case: &Case) {
        let leaf_pem = case.served[0].to_pem().unwrap();
        let chain: Vec<&X509> = case.served.iter().collect();
        std::fs::write(self.tls_dir.join("server.crt"), pem(&chain)).unwrap();
        std::fs::write(self.tls_dir.join("server.key"), case.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        self.pg.sql("select pg_reload_conf()");
        // Wait until the server presents the new certificate.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("openssl")
                .args(["s_client", "-starttls", "postgres", "-cipher", "DEFAULT:@SECLEVEL=0"])
                .args(["-connect", &format!("127.0.0.1:{}", self.pg.port)])
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if let (Some(a), Some(b)) =
                (text.find("-----BEGIN CERTIFICATE-----"), text.find("-----END CERTIFICATE-----"))
            {
                let served = &text[a..b + "-----END CERTIFICATE-----".len()];
                if served.trim() == String::from_utf8_lossy(&leaf_pem).trim() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: the server did not switch certificates:\n{}",
                case.name,
                std::fs::read_to_string(&self.pg.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The libpq environment for one case (files written under `dir`).
fn environment(case: &Case, dir: &Path, port: u16, user: &str, password: &str) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir.join("home/.postgresql")).unwrap();
    let mut env = vec![
        ("HOME".to_owned(), dir.join("home").display().to_string()),
        ("PGHOST".to_owned(), case.host.clone()),
        ("PGPORT".to_owned(), port.to_string()),
        ("PGUSER".to_owned(), user.to_owned()),
        ("PGPASSWORD".to_owned(), password.to_owned()),
        ("PGDATABASE".to_owned(), "postgres".to_owned()),
        ("PGSSLMODE".to_owned(), "verify-full".to_owned()),
        ("PGCONNECT_TIMEOUT".to_owned(), "5".to_owned()),
    ];
    if let Some(addr) = case.hostaddr {
        env.push(("PGHOSTADDR".into(), addr.to_string()));
    }
    let root = dir.join("root.crt");
    match &case.root {
        Root::Certs(certs) => std::fs::write(&root, pem(&certs.iter().collect::<Vec<_>>())).unwrap(),
        Root::Bytes(b) => std::fs::write(&root, b).unwrap(),
        Root::Missing => {}
        Root::Trusted(cert, [option, purpose]) => {
            let plain = dir.join("root-plain.crt");
            std::fs::write(&plain, cert.to_pem().unwrap()).unwrap();
            support::run_ok(
                Command::new("openssl")
                    .args(["x509", "-trustout", option, purpose, "-in"])
                    .arg(&plain)
                    .arg("-out")
                    .arg(&root),
            );
        }
        Root::HomeDefault(certs) => {
            std::fs::write(dir.join("home/.postgresql/root.crt"), pem(&certs.iter().collect::<Vec<_>>())).unwrap();
        }
    }
    if !matches!(case.root, Root::HomeDefault(_)) {
        env.push(("PGSSLROOTCERT".into(), root.display().to_string()));
    }
    if let Some(level) = case.seclevel {
        let conf = dir.join("openssl.cnf");
        std::fs::write(&conf, seclevel_conf(level)).unwrap();
        env.push(("OPENSSL_CONF".into(), conf.display().to_string()));
    }
    match &case.crl {
        Crl::None => {}
        Crl::File(bytes) => {
            std::fs::write(dir.join("root.crl"), bytes).unwrap();
            env.push(("PGSSLCRL".into(), dir.join("root.crl").display().to_string()));
        }
        Crl::Dir(bytes) => {
            let crl_dir = dir.join("crls");
            std::fs::create_dir_all(&crl_dir).unwrap();
            std::fs::write(crl_dir.join("root.crl.pem"), bytes).unwrap();
            support::run_ok(Command::new("openssl").arg("rehash").arg(&crl_dir));
            env.push(("PGSSLCRLDIR".into(), crl_dir.display().to_string()));
        }
        Crl::HomeDefault(bytes) => std::fs::write(dir.join("home/.postgresql/root.crl"), bytes).unwrap(),
        Crl::MissingFile => env.push(("PGSSLCRL".into(), dir.join("no-such.crl").display().to_string())),
        Crl::MissingDir => env.push(("PGSSLCRLDIR".into(), dir.join("no-such-dir").display().to_string())),
        Crl::MissingFileAndDir => {
            env.push(("PGSSLCRL".into(), dir.join("no-such.crl").display().to_string()));
            env.push(("PGSSLCRLDIR".into(), dir.join("no-such-dir").display().to_string()));
        }
    }
    env
}

fn libpq_verdict(env: &[(String, String)]) -> Verdict {
    libpq_verdict_of(&psql(), env)
}

/// The verdict of the psql (and so the libpq) at `psql`.
fn libpq_verdict_of(psql: &Path, env: &[(String, String)]) -> Verdict {
    let out = Command::new(psql)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["-XAtc", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    Verdict { ok: out.status.success() && stdout.trim() == "t", reason: libpq_reason(&stderr) }
}

/// The part of psql's error after "failed: " (or the whole first line).
fn libpq_reason(stderr: &str) -> String {
    let text = stderr.trim().replace("psql: error: ", "");
    let first = text.lines().next().unwrap_or_default();
    first.rsplit_once("failed: ").map_or(first, |(_, r)| r).replace("FATAL:  ", "").trim().to_owned()
}

/// A driver's app (`app`) run directly with `env` and the variables `launcher env --driver
/// DRIVER` would set for the app on top: the driver's own verdict and words on the connection
/// the launcher would hand it.
fn driver_verdict(mut app: Command, driver: &str, env: &[(String, String)], home: &Path) -> Verdict {
    let set = Run::of(
        launcher(home)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["env", "--driver", driver, "--format", "json", "--reveal"]),
    );
    let set: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&set.stdout).unwrap_or_default();
    let out = app
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(set.iter().map(|(k, v)| (k, v.as_str().unwrap_or_default())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    Verdict { ok: out.status.success() && matches!(stdout.trim(), "true" | "t"), reason: stderr.trim().to_owned() }
}

fn launcher_verdict(env: &[(String, String)], home: &Path, args: &[&str]) -> (Verdict, Run) {
    let run = Run::of(launcher(home).envs(env.iter().map(|(k, v)| (k, v))).arg("check").args(args));
    let reason = run.stderr.lines().find_map(|l| l.strip_prefix("launcher: error: ")).unwrap_or_default().to_owned();
    (Verdict { ok: run.code == 0, reason }, run)
}

/// The part of a driver's error that names the refusal (after pgx's "failed to connect to …"
/// prefix, without the parenthesis that closes it).
fn driver_words(reason: &str) -> &str {
    // pgjdbc logs lines before its exception's message, which comes last.
    let reason = reason.lines().last().unwrap_or_default();
    let start = [
        "x509: ",
        "remote error: ",
        "cannot parse",
        "invalid peer certificate: ",
        "received fatal alert: ",
        "[SSL: ",
        "FileNotFoundError",
    ]
    .iter()
    .filter_map(|p| reason.find(p))
    .min()
    .unwrap_or(0);
    let words = &reason[start..];
    // rustls's `…Context { signature_algorithm_id: […], supported_algorithms: […] }`: the name
    // is the verdict, the launcher names the algorithm instead of the list.
    let words = words.split_once(" {").map_or(words, |(name, _)| name);
    // Python's ssl ends with where in `_ssl.c` it raised.
    let words = words.split_once(" (_ssl.c:").map_or(words, |(words, _)| words);
    let opened = words.matches('(').count();
    let closed = words.matches(')').count();
    if closed > opened { words.strip_suffix(')').unwrap_or(words) } else { words }
}

/// libpq's refusals that the launcher must repeat word for word.
const LIBPQ_PHRASES: &[&str] = &[
    "could not find digest for NID",
    "server certificate for",
    "could not get server's host name from server certificate",
    "SSL error: certificate verify failed",
    "root certificate file",
    "could not read root certificate file",
    "host name must be specified",
];

#[test]
fn launcher_check_agrees_with_libpq_on_every_certificate_case() {
    let s = services();
    let dir = s.root.join("oracle");
    // Security level 0 on the server, so that it serves the weak-key and SHA-1 cases at all; the
    // clients keep the system's level unless a case says otherwise.
    std::fs::create_dir_all(&dir).unwrap();
    let server_conf = dir.join("openssl-seclevel0.cnf");
    std::fs::write(&server_conf, seclevel_conf(0)).unwrap();
    let custom = support::pg::Custom { openssl_conf: Some(&server_conf), ..Default::default() };
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let pg = Pg::start_custom(&dir.join("pg"), cert, key, true, support::free_port_pair(), None, Some(custom));
    let server = Server { tls_dir: dir.join("pg/tls"), pg };
    let user = unique("oracle");
    let password = canary();
    server.pg.create_role(&user, &password);

    let cases = cases();
    let mut table = String::new();
    let mut problems = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        server.serve(case);
        let case_dir = dir.join(format!("case-{i}"));
        let env = environment(case, &case_dir, server.pg.port, &user, &password);
        let libpq = libpq_verdict(&env);
        // Today's libpq (17, 18: what apps link, psycopg's wheels bundle 18) must give the same
        // verdict in the same words as Debian 12's 15, which the launcher is held to below.
        for major in [17, 18] {
            let newer = libpq_verdict_of(&support::pg::newer(major).join("psql"), &env);
            if (newer.ok, &newer.reason) != (libpq.ok, &libpq.reason) {
                problems.push(format!(
                    "{}: libpq {major} {} ({:?}) but libpq 15 {} ({:?}): the launcher must say which it judges for",
                    case.name, newer.ok, newer.reason, libpq.ok, libpq.reason
                ));
            }
        }
        let (ours, run) = launcher_verdict(&env, &case_dir.join("home"), &[]);
        // The app's drivers (issue 15): the launcher with --driver D refuses exactly when libpq
        // or D, given what the launcher hands the app, would, and in D's words; D that ignores
        // PGHOSTADDR makes the launcher refuse that combination outright.
        let home = case_dir.join("home");
        let mut judged = Vec::new();
        // libpq's app is psql, above.
        for (driver, app) in &DRIVER_APPS[1..] {
            let theirs = driver_verdict(app(), driver, &env, &home);
            let (ours_d, run_d) = launcher_verdict(&env, &home, &["--driver", driver]);
            run_d.assert_no_leak(&password);
            if case.hostaddr.is_some() {
                if run_d.code != 78 || !ours_d.reason.contains("ignores it") {
                    problems
                        .push(format!("{}: --driver {driver} with PGHOSTADDR must be refused:\n{run_d}", case.name));
                }
            } else if ours_d.ok != (libpq.ok && theirs.ok) {
                problems.push(format!(
                    "{}: libpq {} and {driver} {} but launcher --driver {driver} {}: {}\n    {driver}: {}",
                    case.name, libpq.ok, theirs.ok, ours_d.ok, ours_d.reason, theirs.reason
                ));
            } else if libpq.ok && !theirs.ok {
                let words = driver_words(&theirs.reason);
                if !ours_d.reason.contains(words) {
                    problems.push(format!("{}: {driver} says {words:?}, launcher says {:?}", case.name, ours_d.reason));
                }
            }
            judged.push(format!("{driver}={}", if theirs.ok { "ok" } else { "refuse" }));
        }
        let agree = libpq.ok == ours.ok;
        if libpq.ok {
            accepted += 1;
        } else {
            refused += 1;
        }
        let _ = writeln!(
            table,
            "{:>2} {:<52} libpq={:<6} launcher={:<6} {} {}\n     libpq: {}\n     ours:  {}",
            i + 1,
            case.name,
            if libpq.ok { "ok" } else { "refuse" },
            if ours.ok { "ok" } else { "refuse" },
            judged.join(" "),
            if agree { "" } else { "<-- DISAGREE" },
            libpq.reason,
            ours.reason,
        );
        if !agree {
            problems.push(format!("{}: libpq {} but launcher {}", case.name, libpq.ok, ours.ok));
        } else if !libpq.ok {
            if let Some(phrase) = LIBPQ_PHRASES.iter().find(|p| libpq.reason.contains(**p)) {
                let libpq_line = libpq.reason.lines().next().unwrap_or_default();
                let expected = if *phrase == "SSL error: certificate verify failed" { phrase } else { libpq_line };
                if !ours.reason.contains(expected) {
                    problems.push(format!("{}: libpq says {libpq_line:?}, launcher says {:?}", case.name, ours.reason));
                }
            }
            if !matches!(run.code, 76 | 77 | 78 | 69) {
                problems.push(format!("{}: unexpected exit code {}", case.name, run.code));
            }
        }
    }
    println!("{table}");
    println!("{} cases: libpq accepted {accepted}, refused {refused}", cases.len());
    assert!(cases.len() >= 40, "the oracle needs at least 40 cases");
    assert!(accepted >= 10 && refused >= 10, "both directions must be covered");
    assert!(problems.is_empty(), "launcher and libpq disagree:\n{}\n\n{table}", problems.join("\n"));
}

/// Makes the command that runs a driver's app.
type App = fn() -> Command;

/// Each driver's real app, as `launcher --driver NAME -- app` would run it; libpq's first.
const DRIVER_APPS: &[(&str, App)] = &[
    ("libpq", || {
        let mut psql = Command::new(psql());
        psql.args(["-XAtc", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"]);
        psql
    }),
    ("pgx", || Command::new(support::drivers::pgx_app())),
    ("rustls", support::drivers::rustls_app),
    ("asyncpg", support::drivers::asyncpg_app),
    ("pgjdbc", support::drivers::pgjdbc_app),
    ("node-postgres", support::drivers::node_app),
];

/// Issue 15's matrix, launched for real: for each driver, certificate (the seed article's
/// CN-only self-signed CA, a CA-signed leaf with a SAN, an X.509 v1 leaf, a CA:TRUE leaf) and
/// situation (the right CA, another CA with the same subject, a host name the certificate does
/// not carry, a server without TLS), `launcher --driver D -- app` either runs the app, which
/// then has a TLS session, or refuses before the app runs; and it runs the app exactly when the
/// app, run alone with the same settings and what `launcher env --driver D` gives it, connects
/// and libpq would too (the check is libpq's and the driver's: node-postgres, which checks an IP
/// host's certificate against "localhost", connects alone where libpq, and so the launcher,
/// refuses).
#[test]
fn behind_the_launcher_each_driver_connects_with_tls_exactly_when_it_would_alone() {
    let s = services();
    let dir = s.root.join("matrix");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (&s.certs.server_cert, &s.certs.server_key);
    let pg = Pg::start_custom(&dir.join("pg"), cert, key, true, support::free_port_pair(), None, None);
    let server = Server { tls_dir: dir.join("pg/tls"), pg };
    let plain = Pg::start(&dir.join("pg-plain"), &s.certs, false);
    let user = unique("matrix");
    let password = canary();
    server.pg.create_role(&user, &password);
    plain.create_role(&user, &password);

    let root = ca("matrix root");
    let imposter = ca("matrix root");
    let seed_spec = Spec { cn: Some("localhost"), ca: Some(true), rsa: Some(2048), ..Spec::default() };
    let seed = issue(&seed_spec, None);
    let seed_imposter = issue(&seed_spec, None);
    let v1 = Spec { cn: Some("localhost"), v1: true, ..Spec::default() };
    let certs = [
        ("seed article's CN-only self-signed CA", seed.clone(), seed.clone(), seed_imposter),
        ("leaf with SAN", leaf(&root, &localhost()), root.clone(), imposter.clone()),
        ("X.509 v1 leaf", leaf(&root, &v1), root.clone(), imposter.clone()),
        ("CA:TRUE leaf", leaf(&root, &Spec { ca: Some(true), ..localhost() }), root.clone(), imposter.clone()),
    ];
    // (which certificate is served, the situation), a certificate's situations in a row.
    let root_file = |ca: &Issued| Root::Certs(vec![ca.cert.clone()]);
    let mut runs = Vec::new();
    for (n, (name, served, right, wrong)) in certs.iter().enumerate() {
        runs.push((Some(n), Case::new(&format!("{name}, right CA"), served, &[], root_file(right))));
        runs.push((Some(n), Case::new(&format!("{name}, same-subject other CA"), served, &[], root_file(wrong))));
        let mismatch = Case::new(&format!("{name}, host mismatch"), served, &[], root_file(right));
        runs.push((Some(n), mismatch.host("127.0.0.1")));
    }
    runs.push((None, Case::new("server without TLS", &certs[1].1, &[], root_file(&root))));
    let mut table = String::new();
    let mut problems = Vec::new();
    let mut connected = 0;
    let mut serving = None;
    for (i, (cert, case)) in runs.iter().enumerate() {
        if cert.is_some() && *cert != serving {
            server.serve(case);
            serving = *cert;
        }
        let port = if cert.is_some() { server.pg.port } else { plain.port };
        let case_dir = dir.join(format!("case-{i}"));
        let env = environment(case, &case_dir, port, &user, &password);
        let home = case_dir.join("home");
        let mut row = Vec::new();
        let mut libpq_ok = None;
        for (driver, app) in DRIVER_APPS {
            let alone = driver_verdict(app(), driver, &env, &home);
            let libpq_ok = *libpq_ok.get_or_insert(alone.ok);
            let app = app();
            let mut behind = launcher(&home);
            behind.envs(env.iter().map(|(k, v)| (k, v))).args(["--driver", driver, "--"]);
            behind.arg(app.get_program()).args(app.get_args());
            let run = Run::of(&mut behind);
            run.assert_no_leak(&password);
            let ran_with_tls = run.code == 0 && matches!(run.stdout.trim(), "true" | "t");
            let refused_first = matches!(run.code, 69 | 76 | 77 | 78)
                && run.stdout.is_empty()
                && run.stderr.contains("launcher: error: ");
            if !ran_with_tls && !refused_first {
                problems.push(format!(
                    "{}: {driver} behind the launcher neither connected with TLS nor was refused first:\n{run}",
                    case.name
                ));
            } else if ran_with_tls != (alone.ok && libpq_ok) {
                problems.push(format!(
                    "{}: {driver} alone {} (libpq {}) but behind the launcher {}\n    alone: {}\n{run}",
                    case.name,
                    if alone.ok { "connects" } else { "fails" },
                    if libpq_ok { "connects" } else { "fails" },
                    if ran_with_tls { "connected" } else { "was refused" },
                    alone.reason
                ));
            }
            connected += usize::from(ran_with_tls);
            let outcome = match (ran_with_tls, alone.ok) {
                (true, _) => "tls",
                (false, true) => "refused(libpq)",
                (false, false) => "refused",
            };
            row.push(format!("{driver}={outcome}"));
        }
        let _ = writeln!(table, "{:>2} {:<52} {}", i + 1, case.name, row.join(" "));
    }
    println!("{table}");
    assert!(connected >= 6, "some runs must connect: {table}");
    assert!(problems.is_empty(), "{}\n\n{table}", problems.join("\n"));
}
