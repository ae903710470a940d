//! HashiCorp Vault and OpenBao as a secret source.
//!
//! `vault:PATH` is read the way `vault kv get PATH` reads it: the mount and its KV version are
//! found through `sys/internal/ui/mounts/PATH` (as the Vault CLI does), KV v2 is read through
//! `MOUNT/data/REST`, KV v1 and every other engine through `PATH` itself.
//!
//! vaultrs does the transport. Its settings are filled in explicitly (its defaults read
//! `VAULT_SKIP_VERIFY` and friends from the environment) and never `Debug`-printed: they hold the
//! token.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod address;
mod auth;
mod errors;
mod raw;
mod token;

use std::path::PathBuf;
use std::time::Duration;

use launcher_core::{Document, Fields, IssuedCert, Lease, Reference, SecretSource, SecretString, SourceError};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::raw::{Failure, get};

pub use address::{AddressError, check_address};
pub use auth::{Auth, KUBERNETES_JWT, Login};
pub use token::{TokenOrigin, resolve_token};

/// How to reach and authenticate to Vault. `Debug` leaves the token out.
pub struct VaultConfig {
    /// `VAULT_ADDR`; checked by [`check_address`].
    pub address: String,
    /// The token used for every request.
    pub token: SecretString,
    /// A PEM bundle to trust for an `https://` address (`VAULT_CACERT`), in addition to the
    /// system roots.
    pub ca_cert: Option<PathBuf>,
    /// `VAULT_NAMESPACE` (Vault Enterprise / HCP; OpenBao namespaces).
    pub namespace: Option<String>,
    /// Per-request time limit.
    pub timeout: Duration,
    /// How to authenticate; with a login method, `token` is unused.
    pub auth: Auth,
    /// The storage index of the launch's last write, shared by its attempts: an earlier
    /// attempt's token is revoked with the newest index, which covers its login.
    pub index: Consistency,
}

/// What keeps a launch's requests consistent across a cluster's nodes (see `raw`): one per
/// launch, shared by every attempt's client.
#[derive(Debug, Clone, Default)]
pub struct Consistency(std::sync::Arc<raw::Index>);

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("address", &self.address)
            .field("token", &"<redacted>")
            .field("ca_cert", &self.ca_cert)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("auth", &self.auth)
            .field("index", &self.index)
            .finish()
    }
}

/// A connected Vault client.
pub struct VaultSource {
    client: VaultClient,
    /// The address and the namespace, for messages only (the namespace is named once, beside
    /// the path or login it qualifies).
    address: String,
    namespace: Option<String>,
    login: Option<Login>,
    /// Set once the login token is revoked, so that a second call does nothing.
    revoked: std::sync::atomic::AtomicBool,
    /// The leases this launch was issued, for [`VaultSource::revoke_leases`].
    leases: std::sync::Mutex<Vec<String>>,
    /// The storage index of the launch's last write, for read-after-write on a standby.
    index: std::sync::Arc<raw::Index>,
}

impl std::fmt::Debug for VaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the client: its settings carry the token.
        f.debug_struct("VaultSource").field("address", &self.address).finish_non_exhaustive()
    }
}

/// Where a path lives, as `sys/internal/ui/mounts` reports it.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    path: String,
    kv_version: Option<u8>,
}

impl VaultSource {
    /// Builds the client. Performs no request.
    pub fn new(config: &VaultConfig) -> Result<Self, SourceError> {
        let setting =
            |problem: String| SourceError::Config { reference: format!("Vault at {}", config.address), problem };
        check_address(&config.address).map_err(|e| setting(e.to_string()))?;
        let ca_certs = match &config.ca_cert {
            Some(path) => {
                let text = path.to_str().ok_or_else(|| setting("the CA certificate path is not UTF-8".into()))?;
                vec![text.to_owned()]
            }
            None => Vec::new(),
        };
        let settings = VaultClientSettingsBuilder::default()
            .address(&config.address)
            .token(config.token.expose())
            .ca_certs(ca_certs)
            .identity(None)
            .verify(true)
            .timeout(Some(config.timeout))
            .namespace(config.namespace.clone())
            .wrapping(false)
            .version(1)
            .build()
            .map_err(|e| setting(format!("invalid client settings: {e}")))?;
        let client = VaultClient::new(settings).map_err(|e| match e {
            ClientError::FileReadError { path, source } => {
                SourceError::Io { reference: "VAULT_CACERT".into(), path, source }
            }
            ClientError::ParseCertificateError { path, .. } => {
                setting(format!("{path} is not a PEM certificate bundle"))
            }
            other => setting(other.to_string()),
        })?;
        Ok(Self {
            client,
            address: config.address.clone(),
            namespace: config.namespace.clone(),
            login: None,
            revoked: std::sync::atomic::AtomicBool::default(),
            leases: std::sync::Mutex::default(),
            index: config.index.0.clone(),
        })
    }

    /// Logs in with the configured method (nothing to do for token auth).
    pub async fn login(&mut self, auth: &Auth) -> Result<Option<&Login>, SourceError> {
        let (address, namespace) = (self.address.clone(), self.namespace.clone());
        let map = |e: Failure, method: &str| match e {
            // A login endpoint answers 400 to credentials it rejects (a bad signature, an
            // unknown secret id): that is a refusal, not a configuration mistake.
            Failure { error: ClientError::APIError { code: 400, errors }, .. } => SourceError::Denied {
                reference: match &namespace {
                    Some(ns) => format!("Vault {method} login (namespace {ns})"),
                    None => format!("Vault {method} login"),
                },
                store: format!("Vault at {address}"),
                detail: errors::one_line(&errors),
            },
            e => {
                let reference =
                    launcher_core::Reference::parse(&format!("vault:auth/{method}")).expect("static reference");
                errors::map_error(&address, namespace.as_deref(), e, &reference)
            }
        };
        // While the login is out, a second connection is opened (an unauthenticated health
        // request, its answer read to the end so that the connection goes back to the pool): the
        // mount lookup and the read that follow the login then go out together on warm
        // connections, where one would otherwise wait a round trip for its TCP connect.
        let warm = (!matches!(auth, Auth::Token)).then(|| {
            let http = self.client.http.http.clone();
            let url = format!("{}/v1/sys/health", self.client.http.base.trim_end_matches('/'));
            async move {
                if let Ok(answer) = http.get(url).send().await {
                    let _ = answer.bytes().await;
                }
            }
        });
        let login = auth::login(&mut self.client, &self.index, auth, &address, map);
        let (logged_in, ()) = tokio::join!(login, async {
            if let Some(warm) = warm {
                warm.await;
            }
        });
        self.login = logged_in?;
        Ok(self.login.as_ref())
    }

    /// Revokes the token a login made, so that it does not outlive the launcher. Not called when
    /// a lease hangs on it: revoking the token would revoke the dynamic credentials with it.
    async fn revoke_login(&self) -> Result<bool, SourceError> {
        if self.login.is_none() || self.revoked.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(false);
        }
        // Through the watched client: on a standby that has not applied the login yet, the
        // login's index has the request forwarded instead of refused (403).
        raw::put(&self.client, &self.index, "auth/token/revoke-self".to_owned()).await.map_err(|e| {
            // Not revoked: a later call (the next attempt under --wait) tries again.
            self.revoked.store(false, std::sync::atomic::Ordering::SeqCst);
            let reference = launcher_core::Reference::parse("vault:auth/token/revoke-self").expect("static reference");
            self.map_error(e, &reference)
        })?;
        Ok(true)
    }

    /// Revokes the leases this launch was issued, for a launch that failed while using a token
    /// it was given (after a login, revoking the login token does it). Returns how many; a token
    /// without the `sys/leases/revoke` capability gets Vault's refusal.
    async fn revoke_leases(&self) -> Result<usize, SourceError> {
        if self.login.is_some() {
            return Ok(0);
        }
        let leases = std::mem::take(&mut *self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for (i, id) in leases.iter().enumerate() {
            let path = format!("sys/leases/revoke/{id}");
            if let Err(e) = raw::put(&self.client, &self.index, path).await {
                // Those not revoked stay listed, for a later call to try again.
                self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(&leases[i..]);
                let reference = launcher_core::Reference::parse("vault:sys/leases/revoke").expect("static reference");
                return Err(self.map_error(e, &reference));
            }
        }
        Ok(leases.len())
    }

    async fn mount_of(&self, path: &str, reference: &Reference) -> Result<Option<Mount>, SourceError> {
        let data = match get(&self.client, &self.index, format!("sys/internal/ui/mounts/{path}")).await {
            Ok(data) => data,
            // Not a mount the token may inspect, or no mount at all: read the path as it is,
            // as the Vault CLI falls back to a plain read.
            Err(Failure { error: ClientError::APIError { code: 403 | 404, .. }, .. }) => return Ok(None),
            Err(e) => return Err(self.map_error(e, reference)),
        };
        Ok(parse_mount(&data))
    }

    fn map_error(&self, error: impl Into<Failure>, reference: &Reference) -> SourceError {
        errors::map_error(&self.address, self.namespace.as_deref(), error, reference)
    }
}

fn parse_mount(data: &serde_json::Value) -> Option<Mount> {
    let path = data.get("path")?.as_str()?.to_owned();
    let kv_version = match data.get("type").and_then(|t| t.as_str()) {
        Some("kv" | "generic") => Some(match data.pointer("/options/version").and_then(|v| v.as_str()) {
            Some("2") => 2,
            _ => 1,
        }),
        _ => None,
    };
    Some(Mount { path, kv_version })
}

impl SecretSource for VaultSource {
    fn schemes(&self) -> &'static [launcher_core::Scheme] {
        &[launcher_core::Scheme::Vault, launcher_core::Scheme::VaultPki]
    }

    /// A token the launcher logged in for is revoked once the secrets are read, unless a lease
    /// hangs on it (revoking it would revoke the lease, the database user with it).
    async fn finish(&self, lease_held: bool) -> Result<Vec<String>, SourceError> {
        if lease_held || !self.revoke_login().await? {
            return Ok(Vec::new());
        }
        Ok(vec!["revoked the Vault login token (no lease depends on it)".to_owned()])
    }

    /// After a login, the login token is revoked even though a lease hangs on it, and the
    /// leases go with it; with a token the launcher was given, which it must not revoke, each
    /// lease is revoked instead.
    async fn abandon(&self) -> launcher_core::Abandoned {
        let mut done = launcher_core::Abandoned::default();
        match self.revoke_login().await {
            Ok(true) => done.revoked.push("the Vault login token and any lease issued under it".to_owned()),
            Ok(false) => {}
            Err(e) => done.failed.push(format!("could not revoke the Vault login token: {e}")),
        }
        match self.revoke_leases().await {
            Ok(0) => {}
            Ok(n) => done.revoked.push(format!("the {n} lease(s) issued to it")),
            Err(e) => done.failed.push(format!(
                "could not revoke the lease issued to this launch ({e}): its credentials stay valid until it expires"
            )),
        }
        done
    }

    /// `sys/leases/renew/ID` with the lease's own increment: Vault caps the answer at what the
    /// role's `max_ttl` (and the token the lease hangs on) leaves.
    async fn renew_lease(&self, lease: &Lease) -> Result<Duration, SourceError> {
        let reference = Reference::parse(&format!("vault:sys/leases/renew/{}", lease.id))
            .map_err(|e| SourceError::Config { reference: "vault:sys/leases/renew".into(), problem: e.to_string() })?;
        let answer = raw::put_whole(&self.client, &self.index, format!("sys/leases/renew/{}", lease.id))
            .await
            .map_err(|e| self.map_error(e, &reference))?;
        let seconds = answer.get("lease_duration").and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok(Duration::from_secs(seconds))
    }

    /// `auth/token/renew-self` for a token that expires and may be renewed; a token that
    /// expires but may not be renewed answers with what it has left.
    async fn renew_login(&self) -> Result<Option<Duration>, SourceError> {
        let reference = Reference::parse("vault:auth/token/renew-self").expect("static reference");
        let token = get(&self.client, &self.index, "auth/token/lookup-self".to_owned())
            .await
            .map_err(|e| self.map_error(e, &reference))?;
        // A token that never expires (a root token) has no expire_time; a `ttl` of 0 is also
        // what an expiring one says in its last second.
        if token.get("expire_time").is_none_or(serde_json::Value::is_null) {
            return Ok(None);
        }
        let ttl = token.get("ttl").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if !token.get("renewable").and_then(serde_json::Value::as_bool).unwrap_or(false) {
            return Ok(Some(Duration::from_secs(ttl)));
        }
        let answer = raw::put_whole(&self.client, &self.index, "auth/token/renew-self".to_owned())
            .await
            .map_err(|e| self.map_error(e, &reference))?;
        let seconds = answer.pointer("/auth/lease_duration").and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok(Some(Duration::from_secs(seconds)))
    }

    async fn fetch(&self, reference: &Reference) -> Result<Document, SourceError> {
        if reference.scheme() == launcher_core::Scheme::VaultPki {
            return self.pki_ca_chain(reference).await;
        }
        Ok(self.fetch_leased(reference).await?.0)
    }

    async fn fetch_leased(&self, reference: &Reference) -> Result<(Document, Option<Lease>), SourceError> {
        let path = reference.locator().trim_matches('/');
        // The mount lookup and the read of the likeliest API path (a KV v2 mount named by the
        // first segment, as `secret/` is) go out together: on a slow link that is one round trip
        // instead of two. The guess is used only when the lookup confirms it; otherwise it is
        // dropped and the path the lookup gives is read.
        let guess = path.split_once('/').filter(|(_, rest)| !rest.is_empty());
        let (mount, guessed) = match guess {
            Some((first, rest)) => {
                let (mount, read) =
                    tokio::join!(self.mount_of(path, reference), raw::kv2_read(&self.client, &self.index, first, rest));
                let confirmed = matches!(&mount, Ok(Some(Mount { path: m, kv_version: Some(2) })) if m.trim_end_matches('/') == first);
                (mount?, confirmed.then_some(read))
            }
            None => (self.mount_of(path, reference).await?, None),
        };
        let (data, lease) = if let Some(Mount { path: mount, kv_version: Some(2) }) = mount {
            let rest = path.strip_prefix(mount.as_str()).unwrap_or_default();
            if rest.is_empty() {
                return Err(SourceError::Config {
                    reference: reference.to_string(),
                    problem: format!("names the KV mount \"{mount}\" itself, not a secret in it"),
                });
            }
            let read = match guessed {
                Some(read) => read,
                None => raw::kv2_read(&self.client, &self.index, mount.trim_end_matches('/'), rest).await,
            };
            let data = read.map_err(|e| match self.map_error(e, reference) {
                // `vault kv get` takes the path without the API's `data/`; so do we.
                SourceError::NotFound { reference: shown } if rest.starts_with("data/") => SourceError::Config {
                    reference: shown,
                    problem: format!(
                        "no secret at this path; KV v2 paths are written without \"data/\": vault:{mount}{}",
                        &rest["data/".len()..]
                    ),
                },
                e => e,
            })?;
            (data, None)
        } else {
            // The whole answer: dynamic secrets carry their lease beside `data`. A lease dies
            // with the token: its TTL is the login's, or asked for beside the read, not after it.
            let token_ttl = async {
                match &self.login {
                    Some(login) => Ok(login.ttl),
                    None => get(&self.client, &self.index, "auth/token/lookup-self".to_owned()).await.map(|token| {
                        // 0 is "never expires" below; an expiring token in its last second says 0 too.
                        match token.get("expire_time") {
                            None | Some(serde_json::Value::Null) => 0,
                            Some(_) => token.get("ttl").and_then(serde_json::Value::as_u64).unwrap_or(0).max(1),
                        }
                    }),
                }
            };
            let (answer, token_ttl) =
                tokio::join!(raw::get_whole(&self.client, &self.index, path.to_owned()), token_ttl);
            let mut answer = answer.map_err(|e| self.map_error(e, reference))?;
            let lease = self.lease_of(&answer, token_ttl, reference)?;
            (answer.get_mut("data").map(serde_json::Value::take).unwrap_or_default(), lease)
        };
        match data {
            serde_json::Value::Object(map) => Ok((Document::Fields(Fields::from_json_object(map)), lease)),
            serde_json::Value::Null => {
                Err(SourceError::NotFound { reference: errors::in_namespace(reference, self.namespace.as_deref()) })
            }
            _ => Err(SourceError::bad_content(reference, "Vault's answer holds no fields")),
        }
    }
}

impl launcher_core::IssuesClientCerts for VaultSource {
    async fn issue_client_cert(&self, reference: &Reference, common_name: &str) -> Result<IssuedCert, SourceError> {
        self.pki_issue(reference, common_name).await
    }
}

impl VaultSource {
    /// The CA chain of a PKI mount (`vault-pki:MOUNT`), PEM.
    async fn pki_ca_chain(&self, reference: &Reference) -> Result<Document, SourceError> {
        let mount = reference.locator().trim_matches('/');
        let data = get(&self.client, &self.index, format!("{mount}/cert/ca_chain"))
            .await
            .map_err(|e| self.map_error(e, reference))?;
        let pem = ["ca_chain", "certificate"]
            .iter()
            .find_map(|k| data.get(*k).and_then(serde_json::Value::as_str).filter(|p| !p.is_empty()))
            .ok_or_else(|| SourceError::bad_content(reference, "the PKI mount returned no CA chain"))?;
        Ok(Document::Blob(launcher_core::SecretBytes::new(pem.as_bytes().to_vec())))
    }

    /// Issues a certificate for `common_name` from `vault-pki:MOUNT/issue/ROLE`.
    async fn pki_issue(&self, reference: &Reference, common_name: &str) -> Result<IssuedCert, SourceError> {
        let (mount, role) =
            reference.locator().trim_matches('/').split_once("/issue/").ok_or_else(|| SourceError::Config {
                reference: reference.to_string(),
                problem: "a client certificate reference is vault-pki:MOUNT/issue/ROLE".into(),
            })?;
        let mut options = vaultrs::api::pki::requests::GenerateCertificateRequest::builder();
        options.common_name(common_name);
        let issued = vaultrs::pki::cert::generate(&self.client, mount, role, Some(&mut options))
            .await
            .map_err(|e| self.map_error(e, reference))?;
        Ok(IssuedCert {
            certificate: issued.certificate,
            private_key: SecretString::new(issued.private_key),
            serial_number: issued.serial_number,
        })
    }

    /// The lease of a raw answer, with the TTL of the token it hangs on.
    fn lease_of(
        &self,
        answer: &serde_json::Value,
        token_ttl: Result<u64, Failure>,
        reference: &Reference,
    ) -> Result<Option<Lease>, SourceError> {
        let id = answer.get("lease_id").and_then(serde_json::Value::as_str).unwrap_or_default();
        if id.is_empty() {
            return Ok(None);
        }
        let seconds = answer.get("lease_duration").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let renewable = answer.get("renewable").and_then(serde_json::Value::as_bool).unwrap_or(false);
        // ttl 0 means the token never expires (a root token).
        let token_ttl =
            Some(token_ttl.map_err(|e| self.map_error(e, reference))?).filter(|t| *t > 0).map(Duration::from_secs);
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(id.to_owned());
        Ok(Some(Lease { id: id.to_owned(), ttl: Duration::from_secs(seconds), renewable, token_ttl }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_discovery_reads_kv_versions() {
        let v2 = serde_json::json!({"path":"secret/","type":"kv","options":{"version":"2"}});
        assert_eq!(parse_mount(&v2), Some(Mount { path: "secret/".into(), kv_version: Some(2) }));
        let v1 = serde_json::json!({"path":"kv/","type":"kv","options":null});
        assert_eq!(parse_mount(&v1), Some(Mount { path: "kv/".into(), kv_version: Some(1) }));
        let db = serde_json::json!({"path":"database/","type":"database"});
        assert_eq!(parse_mount(&db), Some(Mount { path: "database/".into(), kv_version: None }));
    }

    #[test]
    fn config_debug_hides_the_token() {
        let c = VaultConfig {
            address: "http://127.0.0.1:8200".into(),
            token: SecretString::new("s.supersecret".into()),
            index: Consistency::default(),
            ca_cert: None,
            namespace: None,
            timeout: Duration::from_secs(1),
            auth: Auth::Token,
        };
        assert!(!format!("{c:?}").contains("supersecret"));
        let s = VaultSource::new(&c).unwrap();
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
