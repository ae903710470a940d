//! The app's driver decides: each driver the app uses (`--driver`) judges the chain the
//! server sent, after libpq's verdict, and refuses (76) what it would refuse, in its own words
//! and with how to fix the certificate. Without `--driver`, the same judges say which driver
//! families would refuse the certificate, as warnings. libpq's judge is the check itself.

mod pgx;

use openssl::x509::X509;
use serde::{Deserialize, Serialize};

/// A PostgreSQL driver whose verdict the check gives too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// libpq (psql, psycopg, ruby-pg, and whatever links libpq): the check's own verdict.
    Libpq,
    /// pgx (Go): Go's crypto/x509 host-name and signature rules; it ignores PGHOSTADDR.
    Pgx,
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

/// What a driver would make of the chain `served` (leaf first) for `host`, trusting the
/// PEM `root` the app gets as PGSSLROOTCERT.
pub fn judge(driver: Driver, served: &[X509], host: &str, root: &[u8]) -> Result<(), Refusal> {
    match driver {
        Driver::Libpq => Ok(()),
        Driver::Pgx => pgx::judge(served, host, root),
    }
}

/// The drivers judged for warnings when `--driver` names none.
pub const FAMILIES: &[Driver] = &[Driver::Pgx];
