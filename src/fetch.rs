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
    /// What `--supervise` compares a later read with.
    pub version: Version,
}

/// What the secrets without a lease held, as a digest (never logged: a digest of a weak password
/// can be guessed from), and when the store said they change next (a static role's rotation).
#[derive(Debug)]
pub struct Version {
    digest: SecretBytes,
    /// Vault's `ttl` of a static role: the time to its next rotation.
    pub rotates_in: Option<std::time::Duration>,
}

impl Version {
    fn of(secret: Option<&DbSecret>, ca: Option<&SecretBytes>, rotates_in: Option<std::time::Duration>) -> Self {
        let mut hash = openssl::sha::Sha256::new();
        if let Some(s) = secret {
            for part in [
                s.user.as_deref(),
                s.password.as_ref().map(launcher_core::SecretString::expose),
                s.host.as_deref(),
                s.dbname.as_deref(),
            ] {
                hash.update(&[u8::from(part.is_some())]);
                hash.update(part.unwrap_or_default().as_bytes());
                hash.update(&[0]);
            }
            hash.update(&s.port.unwrap_or(0).to_be_bytes());
        }
        if let Some(ca) = ca {
            hash.update(ca.expose());
        }
        Self { digest: SecretBytes::new(hash.finish().to_vec()), rotates_in }
    }

    /// Whether the secrets changed since `self` was read.
    #[must_use]
    pub fn changed(&self, now: &Version) -> bool {
        self.digest.expose() != now.digest.expose()
    }
}

/// Reads again what `--supervise` watches: the credentials unless they came with a lease (a
/// read would issue new ones), and the CA.
pub async fn version(plan: &Plan, sources: &Sources, leased: bool) -> Result<Version, Error> {
    let creds = async {
        match &plan.credentials {
            Some(reference) if !leased => {
                let document = sources.fetch(reference).await?;
                let (secret, rotates_in) = credentials(document, None, reference).map(|(s, _, r)| (s, r))?;
                Ok::<_, SourceError>((Some(secret), rotates_in))
            }
            _ => Ok((None, None)),
        }
    };
    let ca = async {
        match (&plan.ca, &plan.credentials) {
            // In the leased secret itself: reading it would issue new credentials.
            (CaPlan::Fetch(reference), Some(creds)) if leased && creds.same_document(reference) => Ok(None),
            (CaPlan::Fetch(reference), _) => Ok(Some(ca_bundle(sources.fetch(reference).await?, reference)?)),
            (CaPlan::Existing(_), _) => Ok(None),
        }
    };
    let ((secret, rotates_in), ca) = futures_util::future::try_join(creds, ca).await?;
    Ok(Version::of(secret.as_ref(), ca.as_ref(), rotates_in))
}

/// Reads the credentials and the CA (concurrently, or once when one secret holds both) and
/// combines them with the plan.
pub async fn fetch(plan: &Plan, sources: &Sources) -> Result<Fetched, Error> {
    let ((secret, lease, rotates_in), ca) = match (&plan.credentials, &plan.ca) {
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
                    return Ok((DbSecret::default(), None, None));
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
    let same = matches!((&plan.credentials, &plan.ca), (Some(c), CaPlan::Fetch(r)) if c.same_document(r));
    let watched_ca = ca.as_ref().filter(|_| lease.is_none() || !same);
    let version = Version::of(lease.is_none().then_some(&secret), watched_ca, rotates_in);
    let target = Target::resolve(plan, secret)?;
    let client = match &plan.client_cert {
        Some(reference) => Some(sources.issue_client_cert(reference, &target.user).await?),
        None => None,
    };
    Ok(Fetched { target, ca, lease, client, version })
}

/// The database credentials in `document`, which `reference` was read into, and when a static
/// role's password rotates next (Vault's `ttl` beside `last_vault_rotation`).
fn credentials(
    mut document: Document,
    lease: Option<Lease>,
    reference: &Reference,
) -> Result<(DbSecret, Option<Lease>, Option<std::time::Duration>), SourceError> {
    if reference.field().is_some() {
        // A field that itself holds the JSON credentials (e.g. an RDS secret in one KV field).
        document = Document::Blob(document.select(reference)?);
    }
    let fields = document.into_fields(reference)?;
    let secret = DbSecret::from_fields(&fields, reference)?;
    log::info_once(format!("credentials from {reference} (fields: {})", fields.names()));
    let rotates_in = fields
        .get("last_vault_rotation")
        .and(fields.get("ttl"))
        .and_then(|ttl| ttl.expose().trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    Ok((secret, lease, rotates_in))
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
