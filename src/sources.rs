//! Dispatch from a reference's scheme to the provider that serves it, built only when needed.
#![cfg_attr(not(any(feature = "vault", feature = "file", feature = "aws")), allow(unused_imports))]

use launcher_core::{Document, Lease, Reference, Scheme, SecretSource, SourceError};

use crate::error::Error;
use crate::plan::Plan;

/// The providers this launch needs.
#[derive(Debug)]
pub struct Sources {
    #[cfg(feature = "vault")]
    vault: Option<launcher_vault::VaultSource>,
    /// Its address and CA, to say whose certificate was refused.
    #[cfg(feature = "vault")]
    vault_plan: Option<crate::plan::VaultPlan>,
    #[cfg(feature = "aws")]
    aws: Option<launcher_aws::AwsSource>,
}

impl Sources {
    /// Builds the clients the plan's references need, and logs in to Vault when a login
    /// method is configured.
    pub async fn new(plan: &Plan) -> Result<Self, Error> {
        #[cfg(feature = "vault")]
        let vault = match &plan.vault {
            None => None,
            Some(v) => {
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
                };
                let mut source = launcher_vault::VaultSource::new(&config)?;
                let login = source.login(&v.auth).await.map_err(|e| explain(e, Some(v)))?;
                if let Some(login) = login {
                    crate::log::info(format!(
                        "Vault at {}: logged in with {} (token accessor {}, TTL {}s)",
                        v.address,
                        v.auth.name(),
                        login.accessor,
                        login.ttl
                    ));
                }
                Some(source)
            }
        };
        #[cfg(not(feature = "vault"))]
        let _ = plan;
        Ok(Self {
            #[cfg(feature = "vault")]
            vault,
            #[cfg(feature = "vault")]
            vault_plan: plan.vault.clone(),
            #[cfg(feature = "aws")]
            aws: plan.uses_aws.then(launcher_aws::AwsSource::new),
        })
    }

    /// Issues the client certificate `reference` names, for `common_name`: (certificate PEM,
    /// key PEM).
    pub async fn issue_client_cert(
        &self,
        reference: &Reference,
        common_name: &str,
    ) -> Result<(String, launcher_core::SecretString), Error> {
        #[cfg(feature = "vault")]
        if let Some(v) = &self.vault {
            let issued = v.pki_issue(reference, common_name).await?;
            crate::log::info(format!(
                "client certificate for \"{common_name}\" issued by {reference} (serial {})",
                issued.serial_number
            ));
            return Ok((issued.certificate, issued.private_key));
        }
        let _ = common_name;
        Err(Error::msg(crate::error::Exit::Config, format!("{reference}: Vault is not configured")))
    }

    /// Called once every secret is read: a Vault token the launcher logged in for is revoked,
    /// unless `lease_held` (a lease hangs on that token; revoking it would revoke the lease).
    pub async fn finish(&self, lease_held: bool) -> Result<(), Error> {
        #[cfg(feature = "vault")]
        if let Some(v) = &self.vault {
            if lease_held {
                return Ok(());
            }
            if v.revoke_login().await? {
                crate::log::info("revoked the Vault login token (no lease depends on it)");
            }
        }
        let _ = lease_held;
        Ok(())
    }

    /// Called when a launch fails, or a check is done (`why`, for the log): the dynamic
    /// credentials it was issued go (with `--wait`, every failed attempt would otherwise leave a
    /// database user behind). After a login, the login token is revoked even though a lease
    /// hangs on it, and the leases go with it; with a token the launcher was given, which it
    /// must not revoke, each lease is revoked instead.
    pub async fn abandon(&self, why: &str) {
        #[cfg(feature = "vault")]
        if let Some(v) = &self.vault {
            match v.revoke_login().await {
                Ok(true) => {
                    crate::log::info(format!("{why}: revoked the Vault login token and any lease issued under it"));
                }
                Ok(false) => {}
                Err(e) => crate::log::warn(format!("could not revoke the Vault login token: {e}")),
            }
            match v.revoke_leases().await {
                Ok(0) => {}
                Ok(n) => crate::log::info(format!("{why}: revoked the {n} lease(s) issued to it")),
                Err(e) => crate::log::warn(format!(
                    "could not revoke the lease issued to this launch ({e}): its credentials stay valid until it expires"
                )),
            }
        }
        let _ = why;
    }

    /// Reads what `reference` points at, with its lease if the source gives one.
    pub async fn fetch_leased(&self, reference: &Reference) -> Result<(Document, Option<Lease>), SourceError> {
        #[cfg(feature = "vault")]
        if let (Scheme::Vault, Some(v)) = (reference.scheme(), &self.vault) {
            return v.fetch_leased(reference).await.map_err(|e| explain(e, self.vault_plan.as_ref()));
        }
        Ok((self.fetch(reference).await?, None))
    }

    /// Reads what `reference` points at.
    pub async fn fetch(&self, reference: &Reference) -> Result<Document, SourceError> {
        match reference.scheme() {
            #[cfg(feature = "vault")]
            Scheme::Vault | Scheme::VaultPki => match &self.vault {
                Some(v) => v.fetch(reference).await.map_err(|e| explain(e, self.vault_plan.as_ref())),
                None => Err(not_configured(reference)),
            },
            #[cfg(feature = "aws")]
            Scheme::AwsSm => match &self.aws {
                // The SDK's futures are large (~24 KB); keep them off the caller's stack frame.
                Some(a) => Box::pin(a.fetch(reference)).await,
                None => Err(SourceError::Config {
                    reference: reference.to_string(),
                    problem: "AWS is not configured".into(),
                }),
            },
            #[cfg(feature = "file")]
            Scheme::File => launcher_file::FileSource::new(crate::log::warn).fetch(reference).await,
            #[allow(unreachable_patterns, reason = "reached only when a provider feature is off")]
            _ => Err(SourceError::Config {
                reference: reference.to_string(),
                problem: format!("this launcher was built without the \"{}\" source", reference.scheme().prefix()),
            }),
        }
    }
}

/// A refused Vault certificate, with whose it was (rustls does not say).
#[cfg(feature = "vault")]
fn explain(error: SourceError, vault: Option<&crate::plan::VaultPlan>) -> SourceError {
    match (error, vault) {
        (SourceError::TlsRefused { reference, store, detail }, Some(v)) => {
            let issuer = crate::tls::peer::describe_refused(&v.address, v.ca_cert.as_deref());
            let detail = match issuer {
                Some(issuer) => format!("{issuer}; rustls: {detail}; give its CA with --vault-cacert or VAULT_CACERT"),
                None => format!("{detail}; give its CA with --vault-cacert or VAULT_CACERT"),
            };
            SourceError::TlsRefused { reference, store, detail }
        }
        (error, _) => error,
    }
}

#[cfg(feature = "vault")]
fn not_configured(reference: &Reference) -> SourceError {
    SourceError::Config { reference: reference.to_string(), problem: "Vault is not configured".into() }
}
