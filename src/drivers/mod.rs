//! The app's driver decides: each driver the app uses (`--driver`) judges the chain the
//! server sent, after libpq's verdict, and refuses (76) what it would refuse, in its own words
//! and with how to fix the certificate. Without `--driver`, the same judges say which driver
//! families would refuse the certificate, as warnings. libpq's judge is the check itself.

pub mod asyncpg;
mod node;
mod pgjdbc;
mod pgx;
mod rustls;

use std::path::Path;

use openssl::x509::{X509, X509Ref};
use serde::{Deserialize, Serialize};

/// A PostgreSQL driver whose verdict the check gives too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// libpq (psql, psycopg, ruby-pg, and whatever links libpq): the check's own verdict.
    Libpq,
    /// pgx (Go): Go's crypto/x509 host-name and signature rules; it ignores PGHOSTADDR.
    Pgx,
    /// pgjdbc (Java): reads no PG* variable but PGPASSFILE, so the app gets JDBC_DATABASE_URL
    /// (verify-full), JDBC_DATABASE_USERNAME and JDBC_DATABASE_PASSWORD; pgjdbc's host-name rules.
    Pgjdbc,
    /// node-postgres (`pg`): it ignores PGSSLROOTCERT, so the app gets NODE_EXTRA_CA_CERTS (merged
    /// with an inherited one); Node's host-name rules.
    NodePostgres,
    /// rustls (sqlx with rustls, tokio-postgres-rustls; examples/rustls): rustls-webpki's own
    /// verdict on the chain; it matches subjectAltName only and refuses CA:TRUE and v1 leaves.
    Rustls,
    /// asyncpg (Python): Python's ssl module (OpenSSL at security level 2, OpenSSL's host-name
    /// rules); it ignores PGHOSTADDR and PGSSLCRLDIR.
    Asyncpg,
}

impl Driver {
    /// The name `--driver` takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Libpq => "libpq",
            Self::Pgx => "pgx",
            Self::Pgjdbc => "pgjdbc",
            Self::NodePostgres => "node-postgres",
            Self::Rustls => "rustls",
            Self::Asyncpg => "asyncpg",
        }
    }

    /// Whether the driver connects to PGHOSTADDR: the others dial PGHOST (pgx, node-postgres,
    /// pgjdbc's URL, the rustls apps' tokio-postgres config) or check the certificate against
    /// the address (sqlx), so with PGHOSTADDR set they would not reach, or not verify, the server
    /// the check did.
    #[must_use]
    pub fn takes_hostaddr(self) -> bool {
        matches!(self, Self::Libpq)
    }

    /// Whether the driver's apps read the password from `PGPASSFILE`: tokio-postgres reads no
    /// password file (sqlx, of the same family, does), so `--password-via passfile` leaves its
    /// apps without a password.
    #[must_use]
    pub fn reads_passfile(self) -> bool {
        !matches!(self, Self::Rustls)
    }

    /// Whether the driver walks a `PGHOST` list as libpq does (next server after a failed
    /// connect, by `target_session_attrs`): node-postgres reads one host, and pgjdbc walks its
    /// own URL's list by its own `targetServerType`.
    #[must_use]
    pub fn walks_host_lists(self) -> bool {
        !matches!(self, Self::NodePostgres | Self::Pgjdbc)
    }
}

/// Why a driver would refuse the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{driver} would refuse the server: {why}; {fix}")]
pub struct Refusal {
    /// The driver, for the message.
    pub driver: &'static str,
    /// The driver's own words.
    pub why: String,
    /// How to fix the certificate.
    pub fix: String,
}

/// What a driver would make of the chain `served` (leaf first) for `host`, trusting the root
/// file `root` the app gets (`root_pem`, its content).
pub fn judge(
    driver: Driver,
    served: &[X509],
    host: &str,
    root: &Path,
    root_pem: &[u8],
    crl: &crate::libpq::CrlPlan,
) -> Result<(), Refusal> {
    match driver {
        Driver::Libpq => Ok(()),
        Driver::Pgx => pgx::judge(served, host, root_pem),
        Driver::Pgjdbc => pgjdbc::judge(served, host, root, root_pem),
        Driver::NodePostgres => node::judge(served, host, root_pem),
        Driver::Rustls => rustls::judge(served, host, root_pem),
        Driver::Asyncpg => asyncpg::judge(served, host, root, crl),
    }
}

/// The `CERTIFICATE` PEM blocks of a root file: what Go's `AppendCertsFromPEM` takes, and what
/// Java's `CertificateFactory` reads.
fn certificate_blocks(pem: &[u8]) -> Vec<X509> {
    let text = String::from_utf8_lossy(pem);
    let mut certs = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let block = &rest[start..];
        let Some(end) = block.find("-----END CERTIFICATE-----") else { break };
        let end = end + "-----END CERTIFICATE-----".len();
        if let Ok(cert) = X509::from_pem(&block.as_bytes()[..end]) {
            certs.push(cert);
        }
        rest = &block[end..];
    }
    certs
}

/// Whether `served` leads to one of `anchors` (no CRLs: neither pgx nor pgjdbc checks them);
/// OpenSSL's error code and words if not.
fn chains_to(served: &[X509], anchors: &[X509]) -> Result<(), (i32, String)> {
    use openssl::stack::Stack;
    use openssl::x509::X509StoreContext;
    use openssl::x509::store::X509StoreBuilder;
    let (Some(leaf), Ok(mut store)) = (served.first(), X509StoreBuilder::new()) else { return Ok(()) };
    for anchor in anchors {
        let _ = store.add_cert(anchor.clone());
    }
    let store = store.build();
    let Ok(mut untrusted) = Stack::new() else { return Ok(()) };
    for cert in &served[1..] {
        let _ = untrusted.push(cert.clone());
    }
    let Ok(mut ctx) = X509StoreContext::new() else { return Ok(()) };
    match ctx.init(&store, leaf, &untrusted, |c| Ok((c.verify_cert()?, c.error()))) {
        Ok((false, error)) => Err((error.as_raw(), error.error_string().to_owned())),
        _ => Ok(()),
    }
}

/// OpenSSL's codes for "the issuer is not among the anchors" (2, 18, 19, 20).
const ISSUER_UNKNOWN: [i32; 4] = [2, 18, 19, 20];

fn same(a: &X509Ref, b: &X509Ref) -> bool {
    matches!((a.to_der(), b.to_der()), (Ok(x), Ok(y)) if x == y)
}

/// The drivers judged for warnings when `--driver` names none.
pub const FAMILIES: &[Driver] = &[Driver::Pgx, Driver::Rustls, Driver::Asyncpg, Driver::Pgjdbc, Driver::NodePostgres];
