//! A 12-factor Rust app on tokio-postgres + tokio-postgres-rustls: no TLS settings in code, only
//! the environment the launcher builds (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD,
//! PGSSLROOTCERT, and PGSSLCERT/PGSSLKEY when the launcher hands it a client certificate).
//! tokio-postgres reads no variable itself, and rustls has no "verify-ca": it always checks the
//! chain against the roots it is given and the certificate against the host name it dials, so
//! the one thing to get right is where the roots come from: PGSSLROOTCERT, never the platform's
//! store. It prints whether its session is encrypted; on failure, the error on stderr, exit 1.
//!
//! `cargo run --example rustls-app` behind `launcher --driver rustls --`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres::config::SslMode;

type Failure = Box<dyn std::error::Error>;

fn var(name: &str) -> Result<String, Failure> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

/// The rustls configuration an app should build: the roots in PGSSLROOTCERT only.
fn tls_config() -> Result<rustls::ClientConfig, Failure> {
    let root_file = var("PGSSLROOTCERT")?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&root_file).map_err(|e| format!("PGSSLROOTCERT: {e}"))?;
    let (added, _ignored) = roots.add_parsable_certificates(certs.filter_map(Result::ok));
    if added == 0 {
        return Err("PGSSLROOTCERT holds no certificate rustls can use as a root".into());
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match (std::env::var("PGSSLCERT"), std::env::var("PGSSLKEY")) {
        (Ok(cert), Ok(key)) => {
            let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&key)?)?
        }
        _ => builder.with_no_client_auth(),
    })
}

async fn run() -> Result<bool, Failure> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(var("PGHOST")?)
        .port(var("PGPORT")?.parse().map_err(|_| "PGPORT is not a port")?)
        .dbname(var("PGDATABASE")?)
        .user(var("PGUSER")?)
        // A server without TLS is refused, never used in plaintext.
        .ssl_mode(SslMode::Require);
    if let Ok(password) = std::env::var("PGPASSWORD") {
        config.password(password);
    }
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config()?);
    let (client, connection) = config.connect(tls).await?;
    let connection = tokio::spawn(connection);
    let row = client.query_one("select ssl from pg_stat_ssl where pid = pg_backend_pid()", &[]).await?;
    drop(client);
    let _ = connection.await;
    Ok(row.get(0))
}

/// An error and its causes on one line (tokio-postgres puts rustls's words in the source).
fn words(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    match runtime.block_on(run()) {
        Ok(ssl) => println!("{ssl}"),
        Err(e) => {
            eprintln!("{}", words(e.as_ref()));
            std::process::exit(1);
        }
    }
}
