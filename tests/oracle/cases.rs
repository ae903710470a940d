//! The oracle's table: each certificate case, what the server serves and what the clients are given.

use std::net::IpAddr;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::certs::{Issued, KeyKind, KeyUsageSpec, Spec, ca, crl, issue, leaf, localhost, pem};

/// The root file libpq is given.
pub enum Root {
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
pub enum Crl {
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

pub struct Case {
    pub name: String,
    /// What the server sends: leaf first.
    pub served: Vec<X509>,
    pub key: PKey<Private>,
    pub root: Root,
    pub crl: Crl,
    pub host: String,
    pub hostaddr: Option<IpAddr>,
    /// The clients' OpenSSL security level, when not the system's (an `OPENSSL_CONF` for both).
    pub seclevel: Option<u8>,
}

/// An OpenSSL configuration that sets the default security level to `level`.
pub fn seclevel_conf(level: u8) -> String {
    format!(
        "openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n\
         system_default = system_default_sect\n[system_default_sect]\nCipherString = DEFAULT:@SECLEVEL={level}\n"
    )
}

impl Case {
    pub fn new(name: &str, served: &Issued, chain: &[&Issued], root: Root) -> Self {
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

    pub fn seclevel(mut self, level: u8) -> Self {
        self.seclevel = Some(level);
        self
    }

    pub fn host(mut self, host: &str) -> Self {
        host.clone_into(&mut self.host);
        self
    }

    /// Connect to 127.0.0.1 while checking the certificate against `host`.
    pub fn named(mut self, host: &str) -> Self {
        host.clone_into(&mut self.host);
        self.hostaddr = Some("127.0.0.1".parse().unwrap());
        self
    }

    pub fn crl(mut self, crl: Crl) -> Self {
        self.crl = crl;
        self
    }
}

#[allow(clippy::too_many_lines, reason = "the table of cases")]
pub fn cases() -> Vec<Case> {
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
