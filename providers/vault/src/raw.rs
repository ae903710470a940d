//! The launcher's requests to Vault, sent through vaultrs' endpoints and middleware but on a
//! client of our own that keeps what vaultrs drops: a throttled answer's `Retry-After` (HTTP
//! 429 from a rate-limit quota), so that `--wait` comes back when the store asked and not
//! before. Also read-after-write across a cluster: OpenBao's standbys answer reads from their
//! own copy of the storage, which may not hold yet the token a login just created (the read
//! then fails with 403), so every request carries the storage index of the launch's last write
//! (`X-Vault-Index`) and asks to be forwarded to the active node when the standby is behind it
//! (`X-Vault-Inconsistent: forward-active-node`, as Vault's own client asks). Also the requests
//! vaultrs has no typed endpoint for: the mount discovery the Vault
//! CLI uses, revoking one lease by its id, and reading a dynamic secret whole (its lease beside
//! its `data`).

use std::sync::Mutex;
use std::time::Duration;

use rustify::endpoint::Endpoint;
use vaultrs::api::AuthInfo;
use vaultrs::client::{Client as _, VaultClient};
use vaultrs::error::ClientError;

/// A failed request: vaultrs' error, and how long the store asked us to stay away when it
/// throttled the request and said so.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: ClientError,
    pub(crate) retry_after: Option<Duration>,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Self { error, retry_after: None }
    }
}

/// One `GET`, returning the `data` of the answer.
pub(crate) async fn get(client: &VaultClient, index: &Index, path: String) -> Result<serde_json::Value, Failure> {
    let (answer, watch) = send(client, index, Raw::get(path)).await?;
    answer
        .wrap::<vaultrs::api::EndpointResult<serde_json::Value>>()
        .map_err(|e| watch.failure(ClientError::from(e)))?
        .data
        .ok_or_else(|| watch.failure(ClientError::ResponseDataEmptyError))
}

/// One `GET`, returning the whole answer (a dynamic secret's lease is beside its `data`).
pub(crate) async fn get_whole(client: &VaultClient, index: &Index, path: String) -> Result<serde_json::Value, Failure> {
    let (answer, watch) = send(client, index, Raw::get(path)).await?;
    answer.parse().map_err(|e| watch.failure(ClientError::from(e)))
}

/// One `PUT` with no body, whose answer is not read.
pub(crate) async fn put(client: &VaultClient, index: &Index, path: String) -> Result<(), Failure> {
    send(client, index, Raw { path, method: rustify::enums::RequestMethod::PUT }).await.map(|_| ())
}

/// One `PUT` with no body, returning the whole answer (a renewal's new lease or token TTL).
pub(crate) async fn put_whole(client: &VaultClient, index: &Index, path: String) -> Result<serde_json::Value, Failure> {
    let (answer, watch) = send(client, index, Raw { path, method: rustify::enums::RequestMethod::PUT }).await?;
    answer.parse().map_err(|e| watch.failure(ClientError::from(e)))
}

/// The fields of the newest version of a KV v2 secret, as `vault kv get` reads them.
pub(crate) async fn kv2_read(
    client: &VaultClient,
    index: &Index,
    mount: &str,
    path: &str,
) -> Result<serde_json::Value, Failure> {
    let mut data = get(client, index, format!("{mount}/data/{path}")).await?;
    Ok(data.get_mut("data").map(serde_json::Value::take).unwrap_or_default())
}

/// A login: the `auth` of the answer.
pub(crate) async fn login<E: Endpoint<Response = ()>>(
    client: &VaultClient,
    index: &Index,
    endpoint: E,
) -> Result<AuthInfo, Failure> {
    let (answer, watch) = send(client, index, endpoint).await?;
    answer
        .wrap::<vaultrs::api::EndpointResult<()>>()
        .map_err(|e| watch.failure(ClientError::from(e)))?
        .auth
        .ok_or_else(|| watch.failure(ClientError::ResponseEmptyError))
}

/// Sends `endpoint` with vaultrs' middleware (API version, token, namespace) on [`Watch`].
async fn send<'a, E: Endpoint>(
    client: &'a VaultClient,
    index: &'a Index,
    endpoint: E,
) -> Result<(rustify::endpoint::EndpointResult<E::Response>, Watch<'a>), Failure> {
    let watch = Watch { http: client.http(), index, retry_after: Mutex::new(None) };
    match endpoint.with_middleware(client.middle()).exec(&watch).await {
        Ok(answer) => Ok((answer, watch)),
        Err(e) => Err(watch.failure(api_error(e))),
    }
}

/// vaultrs' own reading of an error answer (its `parse_err` is private): Vault's `errors` list
/// as an [`ClientError::APIError`], anything else as the transport's error.
fn api_error(error: rustify::errors::ClientError) -> ClientError {
    if let rustify::errors::ClientError::ServerResponseError { code, content: Some(content) } = &error
        && let Ok(serde_json::Value::Object(mut body)) = serde_json::from_str(content)
        && let Some(serde_json::Value::Array(errors)) = body.remove("errors")
    {
        let errors = errors.into_iter().filter_map(|e| e.as_str().map(str::to_owned)).collect();
        return ClientError::APIError { code: *code, errors };
    }
    ClientError::from(error)
}

/// The storage index of the launch's last write, as the store reported it (`X-Vault-Index`:
/// opaque, passed back as it came). Empty until a write, and with stores that send none.
#[derive(Debug, Default)]
pub(crate) struct Index(Mutex<Option<http::HeaderValue>>);

impl Index {
    fn get(&self) -> Option<http::HeaderValue> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, value: http::HeaderValue) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
    }
}

const INDEX: &str = "x-vault-index";

/// vaultrs' HTTP client, watched: a 429's `Retry-After` is kept for the error, and the storage
/// index goes out and comes back (see the module's header).
struct Watch<'a> {
    http: &'a rustify::clients::reqwest::Client,
    index: &'a Index,
    retry_after: Mutex<Option<Duration>>,
}

impl Watch<'_> {
    fn failure(&self, error: ClientError) -> Failure {
        let retry_after = *self.retry_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Failure { error, retry_after }
    }
}

#[async_trait::async_trait]
impl rustify::client::Client for Watch<'_> {
    async fn send(
        &self,
        mut req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, rustify::errors::ClientError> {
        if let Some(index) = self.index.get() {
            req.headers_mut().insert(INDEX, index);
            req.headers_mut().insert("x-vault-inconsistent", http::HeaderValue::from_static("forward-active-node"));
        }
        // Writes are sequential in a launch (the login, then what depends on it): the last
        // one's index covers them all. A read's is the answering node's, perhaps behind it.
        let wrote = req.method() != http::Method::GET;
        let answer = self.http.send(req).await?;
        if wrote
            && answer.status().is_success()
            && let Some(index) = answer.headers().get(INDEX)
        {
            self.index.set(index.clone());
        }
        if answer.status() == http::StatusCode::TOO_MANY_REQUESTS {
            *self.retry_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                answer.headers().get(http::header::RETRY_AFTER).and_then(|v| retry_after(v.to_str().ok()?));
        }
        Ok(answer)
    }

    fn base(&self) -> &str {
        self.http.base()
    }
}

/// `Retry-After` in seconds, as Vault and OpenBao send it (an HTTP date, which they do not
/// send, is not read: the back-off's own floor applies).
fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A request to an arbitrary path, with no body: vaultrs has typed endpoints for most engines,
/// not for the mount discovery the CLI uses nor for revoking one lease by its id.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) path: String,
    pub(crate) method: rustify::enums::RequestMethod,
}

impl Raw {
    pub(crate) fn get(path: String) -> Self {
        Self { path, method: rustify::enums::RequestMethod::GET }
    }
}

#[async_trait::async_trait]
impl rustify::endpoint::Endpoint for Raw {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        self.method.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_only() {
        assert_eq!(retry_after("9"), Some(Duration::from_secs(9)));
        assert_eq!(retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
        assert_eq!(retry_after("-1"), None);
    }
}
