//! The fetch stage: the credentials and the CA bundle read (concurrently, or once when one
//! secret holds both), combined with the plan into the [`Target`], and the client certificate
//! issued; what a secret holds is checked here (a CA bundle with a private key is refused).

use launcher_core::{DbSecret, Document, Lease, Reference, SecretBytes, SourceError};

use crate::error::Error;
use crate::log;
use crate::plan::{CaPlan, Plan};
use crate::sources::Sources;
use crate::target::Target;

/// What `fetch` brings back.
#[derive(Debug)]
pub struct Fetched {
    /// The connection the app will make.
    pub target: Target,
    /// The CA bundle, when fetched.
    pub ca: Option<SecretBytes>,
    /// The credentials' lease, if any.
    pub lease: Option<Lease>,
    /// Client certificate and key, PEM.
    pub client: Option<(String, launcher_core::SecretString)>,
}

/// Reads the credentials and the CA (concurrently, or once when one secret holds both) and
/// combines them with the plan.
pub async fn fetch(plan: &Plan, sources: &Sources) -> Result<Fetched, Error> {
    let ((secret, lease), ca) = match (&plan.credentials, &plan.ca) {
        // One secret holding both (`vault:secret/app/db` and `…#ca_pem`) is read once: one
        // round trip fewer, and a dynamic secret is not issued twice.
        (Some(creds), CaPlan::Fetch(ca)) if creds.same_document(ca) => {
            let (document, lease) = sources.fetch_leased(creds).await?;
            let pem = ca_bundle(document.clone(), ca)?;
            (credentials(document, lease, creds)?, Some(pem))
        }
        _ => {
            let creds = async {
                let Some(reference) = &plan.credentials else {
                    return Ok((DbSecret::default(), None));
                };
                let (document, lease) = sources.fetch_leased(reference).await?;
                credentials(document, lease, reference)
            };
            let ca = async {
                let CaPlan::Fetch(reference) = &plan.ca else {
                    return Ok(None);
                };
                ca_bundle(sources.fetch(reference).await?, reference).map(Some)
            };
            futures_util::future::try_join(creds, ca).await?
        }
    };
    let target = Target::resolve(plan, secret)?;
    let client = match &plan.client_cert {
        Some(reference) => Some(sources.issue_client_cert(reference, &target.user).await?),
        None => None,
    };
    Ok(Fetched { target, ca, lease, client })
}

/// The database credentials in `document`, which `reference` was read into.
fn credentials(
    mut document: Document,
    lease: Option<Lease>,
    reference: &Reference,
) -> Result<(DbSecret, Option<Lease>), SourceError> {
    if reference.field().is_some() {
        // A field that itself holds the JSON credentials (e.g. an RDS secret in one KV field).
        document = Document::Blob(document.select(reference)?);
    }
    let fields = document.into_fields(reference)?;
    let secret = DbSecret::from_fields(&fields, reference)?;
    log::info_once(format!("credentials from {reference} (fields: {})", fields.names()));
    Ok((secret, lease))
}

/// The PEM CA bundle `reference` selects from `document`.
fn ca_bundle(document: Document, reference: &Reference) -> Result<SecretBytes, SourceError> {
    let pem = document.select(reference)?;
    if !contains(pem.expose(), b"-----BEGIN CERTIFICATE-----") {
        return Err(SourceError::bad_content(reference, "is not a PEM certificate bundle (no BEGIN CERTIFICATE line)"));
    }
    // The CA file is written world-readable for the app: a key in it would be given away.
    // Any "BEGIN … PRIVATE KEY" block (PKCS#8, RSA, EC, encrypted) counts.
    if pem
        .expose()
        .split(|b| *b == b'\n')
        .any(|line| line.starts_with(b"-----BEGIN ") && contains(line, b"PRIVATE KEY-----"))
    {
        return Err(SourceError::bad_content(
            reference,
            "holds a private key; a CA bundle holds certificates only (nothing was written)",
        ));
    }
    Ok(pem)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
