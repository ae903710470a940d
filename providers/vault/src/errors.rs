//! Vault's answers and transport failures as [`SourceError`]s: who is at fault, in words that
//! carry no value (response bodies hold secrets, so parse errors keep none of them).

use launcher_core::{Reference, SourceError};
use vaultrs::error::ClientError;

use crate::raw::Failure;

/// `reference`, with the namespace it was read in: a secret "not found" may be a namespace typo.
pub(crate) fn in_namespace(reference: &Reference, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{reference} (namespace {ns})"),
        None => reference.to_string(),
    }
}

/// Maps a failed request for `reference` at the Vault `address` (in `namespace`).
pub(crate) fn map_error(
    address: &str,
    namespace: Option<&str>,
    failure: impl Into<Failure>,
    reference: &Reference,
) -> SourceError {
    {
        let Failure { error, retry_after } = failure.into();
        let reference_text = in_namespace(reference, namespace);
        match error {
            // A rate-limit quota (or a proxy in front of Vault) asks the fleet to slow down:
            // waiting helps, unlike the other 4xx answers.
            ClientError::APIError { code: 429, .. }
            | ClientError::RestClientError {
                source: rustify::errors::ClientError::ServerResponseError { code: 429, .. },
            } => {
                SourceError::Throttled { reference: reference_text, store: format!("Vault at {address}"), retry_after }
            }
            ClientError::APIError { code: 403 | 401, errors } => SourceError::Denied {
                reference: reference_text,
                store: format!("Vault at {address}"),
                detail: one_line(&errors),
            },
            ClientError::APIError { code: 404, .. }
            | ClientError::ResponseDataEmptyError
            | ClientError::ResponseEmptyError => SourceError::NotFound { reference: reference_text },
            // KV v2 upgrades its storage in the background when mounted and again on a node
            // that has just become active (after a failover): until done, it answers 400 to
            // every request. Unavailable for a moment, not misconfigured: --wait rides it out.
            ClientError::APIError { code, errors } if code >= 500 || (code == 400 && kv_upgrading(&errors)) => {
                SourceError::Unreachable {
                    reference: reference_text,
                    store: format!("Vault at {address}"),
                    source: format!("HTTP {code}: {}", one_line(&errors)).into(),
                }
            }
            ClientError::APIError { code, errors } => SourceError::Config {
                reference: reference_text,
                problem: format!("Vault answered HTTP {code}: {}", one_line(&errors)),
            },
            ClientError::RestClientError { source: rustify::errors::ClientError::ServerResponseError { code, .. } } => {
                SourceError::Unreachable {
                    reference: reference_text,
                    store: format!("Vault at {address}"),
                    source: format!("HTTP {code} without a Vault error body").into(),
                }
            }
            // Response parse errors carry the body (a secret) in their fields: keep only words.
            ClientError::RestClientError {
                source:
                    rustify::errors::ClientError::ResponseParseError { .. }
                    | rustify::errors::ClientError::ResponseConversionError { .. },
            }
            | ClientError::JsonParseError { .. } => {
                SourceError::bad_content(reference, "Vault's answer is not the JSON it should be")
            }
            ClientError::RestClientError { source } => match refused_certificate(&source) {
                Some(why) => SourceError::TlsRefused {
                    reference: reference_text,
                    store: format!("Vault at {address}"),
                    detail: why,
                },
                None => SourceError::Unreachable {
                    reference: reference_text,
                    store: format!("Vault at {address}"),
                    source: Box::new(TransportError(launcher_core::error_chain(&source))),
                },
            },
            other => SourceError::Unreachable {
                reference: reference_text,
                store: format!("Vault at {address}"),
                source: Box::new(TransportError(other.to_string())),
            },
        }
    }
}

/// Whether Vault's errors say a KV v2 mount is upgrading ("Upgrading from non-versioned to
/// versioned data", or "Waiting for the primary to upgrade from non-versioned to versioned
/// data" on a standby or a new active node).
fn kv_upgrading(errors: &[String]) -> bool {
    errors.iter().any(|e| e.contains("non-versioned to versioned data"))
}

/// rustls' reason, when the transport failed because the server's certificate was refused.
/// reqwest keeps rustls' error inside `io::Error`s (nested), whose `source()` skips it: look
/// inside each.
fn refused_certificate(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        let mut candidate = Some(e);
        while let Some(c) = candidate {
            if let Some(rustls::Error::InvalidCertificate(why)) = c.downcast_ref::<rustls::Error>() {
                return Some(format!("{why:?}"));
            }
            candidate = c
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .map(|inner| inner as &(dyn std::error::Error + 'static));
        }
        current = e.source();
    }
    None
}

/// Vault's error list on one line (its messages often hold "1 error occurred:\n\t* …").
pub(crate) fn one_line(errors: &[String]) -> String {
    errors
        .iter()
        .map(|e| {
            let words: Vec<&str> = e.split_whitespace().filter(|w| *w != "*").collect();
            let text = words.join(" ");
            text.strip_prefix("1 error occurred: ").map(str::to_owned).unwrap_or(text)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A transport failure, flattened to text (rustify's errors are not `Sync`-friendly to keep).
#[derive(Debug)]
struct TransportError(String);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kv_mount_that_is_upgrading_is_unavailable_not_misconfigured() {
        let reference = Reference::parse("vault:secret/db").unwrap();
        let answer = |code: u16, text: &str| ClientError::APIError { code, errors: vec![text.to_owned()] };
        let upgrading = [
            "Waiting for the primary to upgrade from non-versioned to versioned data. This backend will be \
             unavailable for a brief period and will resume service when the primary is finished.",
            "Upgrading from non-versioned to versioned data. This backend will be unavailable for a brief period \
             and will resume service shortly.",
        ];
        for text in upgrading {
            let e = map_error("http://127.0.0.1:8200", None, answer(400, text), &reference);
            assert!(matches!(e, SourceError::Unreachable { .. }), "{e}");
        }
        let e = map_error("http://127.0.0.1:8200", None, answer(400, "invalid request"), &reference);
        assert!(matches!(e, SourceError::Config { .. }), "{e}");
    }
}
