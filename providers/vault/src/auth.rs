//! Logging in to Vault as a machine: AppRole (role id and secret id from files, a
//! response-wrapped secret id unwrapped after its creation path is checked, as Vault Agent
//! does), JWT and Kubernetes (a JWT from a file). The token a login yields is the launcher's
//! own: it is never passed to the app, and it is revoked once the secrets are read unless a
//! lease (dynamic credentials) hangs on it.

use std::path::{Path, PathBuf};

use launcher_core::{SecretString, SourceError};
use vaultrs::client::{Client, VaultClient};

/// Where the service-account token of a Kubernetes pod is mounted.
pub const KUBERNETES_JWT: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How the launcher authenticates to Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// A token (`VAULT_TOKEN`, a token file, `~/.vault-token`).
    Token,
    /// AppRole at `mount`.
    AppRole {
        /// The auth mount, `approle` by default.
        mount: String,
        /// A file holding the role id.
        role_id_file: PathBuf,
        /// A file holding the secret id, or a response-wrapping token for it.
        secret_id_file: PathBuf,
        /// Whether `secret_id_file` holds a wrapping token.
        wrapped: bool,
    },
    /// JWT/OIDC auth at `mount` with a role and a JWT file.
    Jwt {
        /// The auth mount, `jwt` by default.
        mount: String,
        /// The Vault role.
        role: String,
        /// The JWT file.
        jwt_file: PathBuf,
    },
    /// Kubernetes auth at `mount` with a role and the service-account JWT.
    Kubernetes {
        /// The auth mount, `kubernetes` by default.
        mount: String,
        /// The Vault role.
        role: String,
        /// The JWT file, [`KUBERNETES_JWT`] by default.
        jwt_file: PathBuf,
    },
}

impl Auth {
    /// How the method is named in logs.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::AppRole { .. } => "AppRole",
            Self::Jwt { .. } => "JWT",
            Self::Kubernetes { .. } => "Kubernetes",
        }
    }
}

/// A login's outcome: the token accessor (safe to log) and the token's TTL.
#[derive(Debug, Clone)]
pub struct Login {
    /// The accessor of the token the login made.
    pub accessor: String,
    /// Its TTL in seconds.
    pub ttl: u64,
}

fn denied(what: &str, detail: String) -> SourceError {
    SourceError::Denied { reference: format!("Vault {what} login"), store: "Vault".into(), detail }
}

/// Reads a one-value file (trailing newline trimmed). The error names the file, not its content.
pub(crate) fn read_secret_file(path: &Path, what: &str) -> Result<SecretString, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
        reference: what.to_owned(),
        path: path.display().to_string(),
        source,
    })?;
    let text = SecretString::new(text);
    let trimmed = text.expose().trim();
    if trimmed.is_empty() {
        return Err(SourceError::Config {
            reference: what.to_owned(),
            problem: format!("{} is empty", path.display()),
        });
    }
    Ok(SecretString::new(trimmed.to_owned()))
}

/// Logs in with `auth`, setting the client's token. Returns `None` for token auth.
pub(crate) async fn login(
    client: &mut VaultClient,
    index: &crate::raw::Index,
    auth: &Auth,
    address: &str,
    map: impl Fn(crate::raw::Failure, &str) -> SourceError,
) -> Result<Option<Login>, SourceError> {
    let info = match auth {
        Auth::Token => return Ok(None),
        Auth::AppRole { mount, role_id_file, secret_id_file, wrapped } => {
            let role_id = read_secret_file(role_id_file, "Vault AppRole role id")?;
            let mut secret_id = read_secret_file(secret_id_file, "Vault AppRole secret id")?;
            if *wrapped {
                secret_id = unwrap_secret_id(client, address, mount, &secret_id).await?;
            }
            let request = vaultrs::api::auth::approle::requests::LoginWithApproleRequest::builder()
                .mount(mount)
                .role_id(role_id.expose())
                .secret_id(secret_id.expose())
                .build()
                .map_err(|e| denied("AppRole", e.to_string()))?;
            crate::raw::login(client, index, request).await.map_err(|e| map(e, "AppRole"))?
        }
        Auth::Jwt { mount, role, jwt_file } => {
            let jwt = read_secret_file(jwt_file, "Vault JWT")?;
            let request = vaultrs::api::auth::oidc::requests::JWTLoginRequest::builder()
                .mount(mount)
                .jwt(jwt.expose())
                .role(role.clone())
                .build()
                .map_err(|e| denied("JWT", e.to_string()))?;
            crate::raw::login(client, index, request).await.map_err(|e| map(e, "JWT"))?
        }
        Auth::Kubernetes { mount, role, jwt_file } => {
            let jwt = read_secret_file(jwt_file, "Kubernetes service-account token")?;
            let request = vaultrs::api::auth::kubernetes::requests::LoginWithKubernetesRequest::builder()
                .mount(mount)
                .role(role)
                .jwt(jwt.expose())
                .build()
                .map_err(|e| denied("Kubernetes", e.to_string()))?;
            crate::raw::login(client, index, request).await.map_err(|e| map(e, "Kubernetes"))?
        }
    };
    let token = SecretString::new(info.client_token);
    client.set_token(token.expose());
    Ok(Some(Login { accessor: info.accessor, ttl: info.lease_duration }))
}

/// Unwraps a response-wrapped secret id, after checking that the wrapping token was made by
/// this AppRole mount's secret-id endpoint (so that a wrapping token for something else, or
/// one an attacker minted elsewhere, is not unwrapped blindly).
async fn unwrap_secret_id(
    client: &VaultClient,
    address: &str,
    mount: &str,
    wrapping_token: &SecretString,
) -> Result<SecretString, SourceError> {
    let lookup = vaultrs::sys::wrapping::lookup(client, wrapping_token.expose()).await.map_err(|e| {
        denied(
            "AppRole",
            format!("the wrapped secret id is not a valid wrapping token (it may have been used already): {e}"),
        )
    })?;
    let path = lookup.creation_path.trim_matches('/');
    let expected_prefix = format!("auth/{}/role/", mount.trim_matches('/'));
    if !(path.starts_with(&expected_prefix) && path.ends_with("/secret-id")) {
        return Err(denied(
            "AppRole",
            format!("the wrapped secret id was created at \"{path}\", not by {expected_prefix}NAME/secret-id"),
        ));
    }
    // Unwrapping authenticates with the wrapping token itself.
    let mut settings = client.settings.clone();
    settings.token = wrapping_token.expose().to_owned();
    let unwrapper = VaultClient::new(settings).map_err(|e| denied("AppRole", e.to_string()))?;
    let data: serde_json::Value = vaultrs::sys::wrapping::unwrap(&unwrapper, None)
        .await
        .map_err(|e| denied("AppRole", format!("unwrapping the secret id failed at {address}: {e}")))?;
    match data {
        serde_json::Value::Object(mut map) => match map.remove("secret_id") {
            Some(serde_json::Value::String(s)) => Ok(SecretString::new(s)),
            _ => Err(denied("AppRole", "the unwrapped answer holds no secret_id".into())),
        },
        _ => Err(denied("AppRole", "the unwrapped answer holds no secret_id".into())),
    }
}
