//! Certificates made at run time with the openssl CLI (ECDSA P-256: fast to generate).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run_ok;

/// The test PKI: a CA, a server certificate for `localhost` and `127.0.0.1` signed by it, and an
/// unrelated CA that signed nothing the server presents.
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub other_ca: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ca = self_signed_ca(dir, "ca", "launcher test CA");
        let other = self_signed_ca(dir, "other-ca", "unrelated CA");
        let (server_cert, server_key) =
            issue(dir, "server", &ca, "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1");
        Self { dir: dir.to_owned(), ca: ca.0, ca_key: ca.1, server_cert, server_key, other_ca: other.0 }
    }
}

/// `openssl req -x509` with a P-256 key: returns (certificate, key).
pub fn self_signed_ca(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "365"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .arg("-subj")
            .arg(format!("/CN={cn}")),
    );
    (cert, key)
}

/// A P-256 certificate for `subject` with `extensions` (an openssl extfile body), signed by `ca`.
pub fn issue(dir: &Path, name: &str, ca: &(PathBuf, PathBuf), subject: &str, extensions: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.crt"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, format!("{extensions}\n")).unwrap();
    run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .arg("-subj")
            .arg(subject),
    );
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "365", "-set_serial", &serial()])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca.0)
            .arg("-CAkey")
            .arg(&ca.1)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

fn serial() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1000);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
