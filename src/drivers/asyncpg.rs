//! asyncpg (Python): it verifies with Python's ssl module, which is OpenSSL, but not set up as
//! libpq sets it up. Ported from asyncpg 0.30.0 `connect_utils.py` (`_parse_connect_dsn_and_args`:
//! `SSLContext(PROTOCOL_TLS_CLIENT)`, `load_verify_locations(cafile=PGSSLROOTCERT)`, then
//! `PGSSLCRL` — or `~/.postgresql/root.crl` if it exists — with `VERIFY_CRL_CHECK_CHAIN`; no
//! `PGSSLCRLDIR`, no `PGHOSTADDR`) and CPython 3.11 `Modules/_ssl.c` (the default cipher string's
//! `@SECLEVEL=2`, whatever openssl.cnf says; `X509_V_FLAG_TRUSTED_FIRST`; host names through
//! `X509_VERIFY_PARAM_set1_host` with `X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS`, and a host that
//! `a2i_IPADDRESS` parses through `set1_ip`, which matches iPAddress entries only; the words of
//! `SSLCertVerificationError`). The chain is verified here again, in an OpenSSL store set up
//! that way: the same library and the same settings, so the same verdict.

use std::net::IpAddr;
use std::path::Path;

use openssl::ssl::SslFiletype;
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::verify::{X509CheckFlags, X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509PurposeId, X509StoreContext};

use super::Refusal;
use crate::libpq::CrlPlan;

/// What asyncpg 0.30.0 cannot read back from a `.pgpass` line that libpq reads: its
/// `_read_password_file` strips the whole line (leading and trailing white space of the first
/// and last field is lost) and splits on unescaped `:` without ever unescaping `\:` or `\\`, so
/// a field holding `:` or `\` reaches it with the backslash still in it. The problem, in words
/// naming the field only.
#[must_use]
pub fn passfile_problem(host: &str, user: &str, password: &str) -> Option<String> {
    for (what, value) in [("host name", host), ("user name", user), ("password", password)] {
        if value.contains([':', '\\']) {
            return Some(format!(
                "the {what} holds ':' or '\\', which asyncpg reads from a .pgpass with the escape still in it"
            ));
        }
    }
    (password.trim_end() != password || host.trim_start() != host).then(|| {
        "the password ends (or the host name starts) with white space, which asyncpg strips from a .pgpass line"
            .to_owned()
    })
}

/// Python's `_ssl.c` verify codes with words of its own.
const HOSTNAME_MISMATCH: i32 = 62;
const IP_ADDRESS_MISMATCH: i32 = 64;

pub(super) fn judge(served: &[X509], host: &str, root: &Path, crl: &CrlPlan) -> Result<(), Refusal> {
    let Some((leaf, rest)) = served.split_first() else { return Ok(()) };
    let python = |why: String, fix: &str| Refusal { driver: "asyncpg (Python's ssl)", why, fix: fix.to_owned() };
    let crl_file = match (&crl.named, &crl.default) {
        (Some(named), _) if !named.is_file() => {
            return Err(python(
                "FileNotFoundError: [Errno 2] No such file or directory".into(),
                "asyncpg, unlike libpq, fails when PGSSLCRL names no file: unset PGSSLCRL or point it at the CRL",
            ));
        }
        (Some(named), _) => Some(named.as_path()),
        (None, Some(default)) if default.is_file() => Some(default.as_path()),
        _ => None,
    };
    let verdict = (|| -> Result<(bool, i32, String), openssl::error::ErrorStack> {
        let mut store = X509StoreBuilder::new()?;
        let lookup = store.add_lookup(X509Lookup::file())?;
        // `load_verify_locations(cafile=…)` reads certificates and CRLs from either file.
        for file in std::iter::once(root).chain(crl_file) {
            let _ = lookup.load_cert_file(file, SslFiletype::PEM);
            let _ = lookup.load_crl_file(file, SslFiletype::PEM);
        }
        let mut param = X509VerifyParam::new()?;
        param.set_auth_level(2);
        param.set_purpose(X509PurposeId::SSL_SERVER)?;
        let mut flags = X509VerifyFlags::TRUSTED_FIRST;
        if crl_file.is_some() {
            flags |= X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL;
        }
        param.set_flags(flags)?;
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match ipv4_or_ipv6(host) {
            Some(ip) => param.set_ip(ip)?,
            None => param.set_host(host)?,
        }
        store.set_param(&param)?;
        let store = store.build();
        let mut untrusted = openssl::stack::Stack::new()?;
        for cert in rest {
            untrusted.push(cert.clone())?;
        }
        let mut context = X509StoreContext::new()?;
        context.init(&store, leaf, &untrusted, |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error().as_raw(), c.error().error_string().to_owned()))
        })
    })();
    let Ok((false, code, words)) = verdict else { return Ok(()) };
    let (why, fix) = match code {
        HOSTNAME_MISMATCH => (
            format!("Hostname mismatch, certificate is not valid for '{host}'."),
            "OpenSSL's rules: the CN only when there is no DNS subjectAltName, no partial-label wildcards",
        ),
        IP_ADDRESS_MISMATCH => (
            format!("IP address mismatch, certificate is not valid for '{host}'."),
            "Python matches an IP host against IP subjectAltName entries only (never DNS entries or the CN): \
             re-issue the certificate with subjectAltName IP:<the address>",
        ),
        _ => (
            words,
            "Python's ssl verifies at OpenSSL security level 2 whatever openssl.cnf says: RSA keys of 2048 bits or \
             more and SHA-256 signatures or better throughout the chain",
        ),
    };
    Err(python(format!("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {why}"), fix))
}

/// What OpenSSL's `a2i_IPADDRESS` takes as an address: four decimal octets or an IPv6 address
/// (not `inet_aton`'s short or hex forms, which Rust does not parse either).
fn ipv4_or_ipv6(host: &str) -> Option<IpAddr> {
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::passfile_problem;

    #[test]
    fn what_asyncpg_cannot_read_back_from_a_pgpass_is_named_by_field() {
        assert_eq!(passfile_problem("db", "app", "plain-Pa55word"), None);
        assert!(passfile_problem("db", "app", "a:b").is_some_and(|p| p.starts_with("the password")));
        assert!(passfile_problem("db", "app", "a\\b").is_some_and(|p| p.starts_with("the password")));
        assert!(passfile_problem("db", "ad:min", "x").is_some_and(|p| p.starts_with("the user name")));
        assert!(passfile_problem("db", "app", "ends with space ").is_some());
        assert_eq!(passfile_problem("db", "app", " starts with space"), None, "only the line's ends are stripped");
    }
}
