//! Requests vaultrs has no typed endpoint for: the mount discovery the Vault CLI uses, revoking
//! one lease by its id, and reading a dynamic secret whole (its lease beside its `data`).

use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

/// One `GET` through vaultrs, returning the `data` of the answer as JSON.
pub(crate) async fn get(client: &VaultClient, path: String) -> Result<serde_json::Value, ClientError> {
    vaultrs::api::exec_with_result(client, Raw::get(path)).await
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
