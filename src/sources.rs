//! The secret sources a launch needs, built only when a reference needs them, and dispatch from
//! a reference's scheme to the one that serves it. Sources plug in through
//! [`launcher_core::SecretSource`] (and [`launcher_core::IssuesClientCerts`] for a PKI): each is
//! built in one place below, under its own Cargo feature, and everything else (fetching, the
//! lifecycle hooks, the messages) is the same for all.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use launcher_core::{Abandoned, Document, IssuesClientCerts, Lease, Reference, Scheme, SecretSource, SourceError};

use crate::error::{Error, Exit};
use crate::plan::Plan;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe face of a [`SecretSource`], so that the launch holds a list of them.
trait Provider: Send + Sync {
    fn schemes(&self) -> &'static [Scheme];
    fn fetch<'a>(&'a self, reference: &'a Reference) -> Boxed<'a, Result<Document, SourceError>>;
    fn fetch_leased<'a>(
        &'a self,
        reference: &'a Reference,
    ) -> Boxed<'a, Result<(Document, Option<Lease>), SourceError>>;
    fn finish(&self, lease_held: bool) -> Boxed<'_, Result<Vec<String>, SourceError>>;
    fn abandon(&self) -> Boxed<'_, Abandoned>;
    fn renew_lease<'a>(&'a self, lease: &'a Lease) -> Boxed<'a, Result<std::time::Duration, SourceError>>;
    fn renew_login(&self) -> Boxed<'_, Result<Option<std::time::Duration>, SourceError>>;
}

impl<T: SecretSource + Send + Sync> Provider for T {
    fn schemes(&self) -> &'static [Scheme] {
        SecretSource::schemes(self)
    }

    fn fetch<'a>(&'a self, reference: &'a Reference) -> Boxed<'a, Result<Document, SourceError>> {
        Box::pin(SecretSource::fetch(self, reference))
    }

    fn fetch_leased<'a>(
        &'a self,
        reference: &'a Reference,
    ) -> Boxed<'a, Result<(Document, Option<Lease>), SourceError>> {
        Box::pin(SecretSource::fetch_leased(self, reference))
    }

    fn finish(&self, lease_held: bool) -> Boxed<'_, Result<Vec<String>, SourceError>> {
        Box::pin(SecretSource::finish(self, lease_held))
    }

    fn abandon(&self) -> Boxed<'_, Abandoned> {
        Box::pin(SecretSource::abandon(self))
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease) -> Boxed<'a, Result<std::time::Duration, SourceError>> {
        Box::pin(SecretSource::renew_lease(self, lease))
    }

    fn renew_login(&self) -> Boxed<'_, Result<Option<std::time::Duration>, SourceError>> {
        Box::pin(SecretSource::renew_login(self))
    }
}

/// The object-safe face of [`IssuesClientCerts`].
trait Issuer: Send + Sync {
    fn issue<'a>(
        &'a self,
        reference: &'a Reference,
        common_name: &'a str,
    ) -> Boxed<'a, Result<launcher_core::IssuedCert, SourceError>>;
}

impl<T: IssuesClientCerts + Send + Sync> Issuer for T {
    fn issue<'a>(
        &'a self,
        reference: &'a Reference,
        common_name: &'a str,
    ) -> Boxed<'a, Result<launcher_core::IssuedCert, SourceError>> {
        Box::pin(self.issue_client_cert(reference, common_name))
    }
}

/// Adds to a source's error what only the launcher can find out (whose certificate was refused).
type Explain = Box<dyn Fn(SourceError) -> SourceError + Send + Sync>;

/// The sources this launch needs.
pub struct Sources {
    providers: Vec<Arc<dyn Provider>>,
    issuer: Option<Arc<dyn Issuer>>,
    explain: Option<Explain>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let schemes: Vec<&str> = self.providers.iter().flat_map(|p| p.schemes()).map(|s| s.prefix()).collect();
        f.debug_struct("Sources").field("schemes", &schemes).finish_non_exhaustive()
    }
}

impl Sources {
    /// Builds the clients the plan's references need (logging in to Vault when a login method
    /// is configured). Each source is built here, under its feature, and nowhere else.
    pub async fn new(plan: &Plan, attempts: &Attempts) -> Result<Self, Error> {
        let mut sources = Self { providers: Vec::new(), issuer: None, explain: None };
        #[cfg(feature = "vault")]
        if let Some(v) = &plan.vault {
            let vault = Arc::new(vault(plan, v, &attempts.vault_index).await?);
            sources.providers.push(vault.clone());
            sources.issuer = Some(vault);
            let v = v.clone();
            sources.explain = Some(Box::new(move |e| explain_vault(e, &v)));
        }
        #[cfg(feature = "aws")]
        if plan.uses_aws {
            sources.providers.push(Arc::new(launcher_aws::AwsSource::new()));
        }
        #[cfg(feature = "file")]
        sources.providers.push(Arc::new(launcher_file::FileSource::new(crate::log::warn)));
        #[cfg(not(any(feature = "vault", feature = "aws")))]
        let _ = plan;
        Ok(sources)
    }

    fn provider(&self, reference: &Reference) -> Result<&dyn Provider, SourceError> {
        let scheme = reference.scheme();
        if let Some(p) = self.providers.iter().find(|p| p.schemes().contains(&scheme)) {
            return Ok(p.as_ref());
        }
        // A scheme whose source is compiled in is only missing here when the plan did not ask for it.
        let built = matches!(scheme, Scheme::Vault | Scheme::VaultPki) && cfg!(feature = "vault")
            || scheme == Scheme::AwsSm && cfg!(feature = "aws")
            || scheme == Scheme::File && cfg!(feature = "file");
        let problem = if built {
            format!("{} is not configured", store_name(scheme))
        } else {
            format!("this launcher was built without the \"{}\" source", scheme.prefix())
        };
        Err(SourceError::Config { reference: reference.to_string(), problem })
    }

    fn explained(&self, error: SourceError) -> SourceError {
        match &self.explain {
            Some(explain) => explain(error),
            None => error,
        }
    }

    /// Reads what `reference` points at, with its lease if the source gives one.
    pub async fn fetch_leased(&self, reference: &Reference) -> Result<(Document, Option<Lease>), SourceError> {
        self.provider(reference)?.fetch_leased(reference).await.map_err(|e| self.explained(e))
    }

    /// Reads what `reference` points at.
    pub async fn fetch(&self, reference: &Reference) -> Result<Document, SourceError> {
        self.provider(reference)?.fetch(reference).await.map_err(|e| self.explained(e))
    }

    /// Issues the client certificate `reference` names, for `common_name`: (certificate PEM,
    /// key PEM).
    pub async fn issue_client_cert(
        &self,
        reference: &Reference,
        common_name: &str,
    ) -> Result<(String, launcher_core::SecretString), Error> {
        let Some(pki) = &self.issuer else {
            return Err(Error::msg(Exit::Config, format!("{reference}: Vault is not configured")));
        };
        let issued = pki.issue(reference, common_name).await.map_err(|e| self.explained(e))?;
        crate::log::info(format!(
            "client certificate for \"{common_name}\" issued by {reference} (serial {})",
            issued.serial_number
        ));
        Ok((issued.certificate, issued.private_key))
    }

    /// Called once every secret is read: each source lets go of what it logged in with, unless
    /// `lease_held` (a lease hangs on it).
    pub async fn finish(&self, lease_held: bool) -> Result<(), Error> {
        for provider in &self.providers {
            provider.finish(lease_held).await?.iter().for_each(crate::log::info);
        }
        Ok(())
    }

    /// Extends the lease of what `reference` read (`--supervise`): its TTL from now.
    pub async fn renew_lease(&self, reference: &Reference, lease: &Lease) -> Result<std::time::Duration, Error> {
        Ok(self.provider(reference)?.renew_lease(lease).await.map_err(|e| self.explained(e))?)
    }

    /// Extends every token the sources read with (`--supervise`): the shortest TTL left, `None`
    /// when none expires.
    pub async fn renew_login(&self) -> Result<Option<std::time::Duration>, Error> {
        let mut shortest: Option<std::time::Duration> = None;
        for provider in &self.providers {
            if let Some(ttl) = provider.renew_login().await.map_err(|e| self.explained(e))? {
                shortest = Some(shortest.map_or(ttl, |s| s.min(ttl)));
            }
        }
        Ok(shortest)
    }

    /// Called when a launch fails, is stopped, or a check is done (`why`, for the log): each
    /// source revokes what this launch was issued (with `--wait`, every failed attempt would
    /// otherwise leave a database user behind). False when something could not be revoked
    /// (the store unreachable in a failover): a later call tries again.
    pub async fn abandon(&self, why: &str) -> bool {
        self.revoke(why, true).await
    }

    /// [`Sources::abandon`], saying what failed only when `warn`.
    async fn revoke(&self, why: &str, warn: bool) -> bool {
        let mut settled = true;
        for provider in &self.providers {
            let done = provider.abandon().await;
            if !done.revoked.is_empty() {
                crate::log::info(format!("{why}: revoked {}", done.revoked.join(", and ")));
            }
            if warn {
                done.failed.iter().for_each(crate::log::warn);
            }
            settled &= done.failed.is_empty();
        }
        settled
    }
}

/// What the attempts of one launch share. What failed attempts could not revoke (the store
/// was unreachable: a failover, a restart), kept to be revoked once it answers again: at each
/// later attempt, and once more when the launch is done, so that a launch that rides out a
/// failover leaves no token or lease of its failed attempts behind. And Vault's storage index
/// of the launch's last write, with which each attempt (and each revocation) reads what the
/// earlier ones wrote, whichever node answers.
#[derive(Debug, Default)]
pub struct Attempts {
    owed: std::sync::Mutex<Vec<Sources>>,
    #[cfg(feature = "vault")]
    vault_index: launcher_vault::Consistency,
}

impl Attempts {
    /// Keeps `sources` to be revoked later.
    pub fn owe(&self, sources: Sources) {
        self.owed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sources);
    }

    /// Tries again until everything owed is revoked or `deadline` passes, then says what is
    /// left for good. A store that has just elected a new leader may refuse a token it will
    /// know a moment later (403, while it restores its leases): worth a few tries.
    pub async fn settle_by(&self, deadline: std::time::Instant) {
        let pause = std::time::Duration::from_millis(500);
        loop {
            let last = std::time::Instant::now() + pause >= deadline;
            self.settle(last).await;
            if last || self.owed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Tries to revoke everything owed again, keeping what still fails (said once already,
    /// when it first failed); with `last`, says what is left for good.
    pub async fn settle(&self, last: bool) {
        let owed = std::mem::take(&mut *self.owed.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for sources in owed {
            if !sources.revoke("an earlier attempt", last).await {
                self.owe(sources);
            }
        }
    }
}

fn store_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Vault | Scheme::VaultPki => "Vault",
        Scheme::AwsSm => "AWS",
        _ => "its source",
    }
}

/// The Vault client, with the token from the environment or a login.
#[cfg(feature = "vault")]
async fn vault(
    plan: &Plan,
    v: &crate::plan::VaultPlan,
    index: &launcher_vault::Consistency,
) -> Result<launcher_vault::VaultSource, Error> {
    let token = if v.auth == launcher_vault::Auth::Token {
        let home = plan.env.get("HOME").map(std::path::PathBuf::from);
        let (token, origin) = launcher_vault::resolve_token(
            v.token_file.as_deref(),
            |name| plan.env.get(name).map(str::to_owned),
            home.as_deref(),
        )?;
        let namespace = v.namespace.as_deref().map(|ns| format!(" (namespace {ns})")).unwrap_or_default();
        crate::log::info_once(format!("Vault at {}{namespace} with the token from {origin}", v.address));
        token
    } else {
        launcher_core::SecretString::default()
    };
    let config = launcher_vault::VaultConfig {
        address: v.address.clone(),
        token,
        ca_cert: v.ca_cert.clone(),
        namespace: v.namespace.clone(),
        timeout: std::time::Duration::from_secs(15),
        auth: v.auth.clone(),
        index: index.clone(),
    };
    let mut source = launcher_vault::VaultSource::new(&config)?;
    let login = source.login(&v.auth).await.map_err(|e| explain_vault(e, v))?;
    if let Some(login) = login {
        crate::log::info(format!(
            "Vault at {}: logged in with {} (token accessor {}, TTL {}s)",
            v.address,
            v.auth.name(),
            login.accessor,
            login.ttl
        ));
    }
    Ok(source)
}

/// A refused Vault certificate, with whose it was (rustls does not say).
#[cfg(feature = "vault")]
fn explain_vault(error: SourceError, v: &crate::plan::VaultPlan) -> SourceError {
    match error {
        SourceError::TlsRefused { reference, store, detail } => {
            let issuer = crate::tls::peer::describe_refused(&v.address, v.ca_cert.as_deref());
            let detail = match issuer {
                Some(issuer) => format!("{issuer}; rustls: {detail}; give its CA with --vault-cacert or VAULT_CACERT"),
                None => format!("{detail}; give its CA with --vault-cacert or VAULT_CACERT"),
            };
            SourceError::TlsRefused { reference, store, detail }
        }
        error => error,
    }
}
