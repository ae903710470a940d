//! AWS Secrets Manager as a secret source.
//!
//! `aws-sm:NAME_OR_ARN[?version-stage=STAGE|?version-id=ID][#FIELD]`. Credentials and region come
//! from the SDK's default chain (environment, profile, web identity, ECS/EC2 metadata); a full
//! ARN's region wins over the default one; `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` are honoured by the SDK.
//!
//! `SecretString` and `SecretBinary` are moved out of the SDK's output into zeroizing buffers at
//! once; the SDK's own `Debug` already redacts them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use launcher_core::{Document, Reference, SecretBytes, SecretSource, SourceError};
use tokio::sync::OnceCell;

/// Which version of a secret to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The default: `AWSCURRENT`.
    Current,
    /// `?version-stage=STAGE`, e.g. `AWSPREVIOUS`.
    Stage(String),
    /// `?version-id=ID`.
    Id(String),
}

/// A parsed `aws-sm:` locator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretId {
    /// The name or full ARN.
    pub id: String,
    /// The region named by an ARN, if the id is one.
    pub region: Option<String>,
    /// The version asked for.
    pub version: Version,
}

impl SecretId {
    /// Parses the locator of an `aws-sm:` reference.
    pub fn parse(reference: &Reference) -> Result<Self, SourceError> {
        let bad = |problem: String| SourceError::Config { reference: reference.to_string(), problem };
        let (id, query) = match reference.locator().split_once('?') {
            Some((id, query)) => (id, Some(query)),
            None => (reference.locator(), None),
        };
        let version = match query.map(|q| q.split_once('=').unwrap_or((q, ""))) {
            None => Version::Current,
            Some(("version-stage", stage)) if !stage.is_empty() => Version::Stage(stage.to_owned()),
            Some(("version-id", id)) if !id.is_empty() => Version::Id(id.to_owned()),
            Some((key, _)) => {
                return Err(bad(format!("\"?{key}\" is not understood; use ?version-stage=STAGE or ?version-id=ID")));
            }
        };
        if id.is_empty() {
            return Err(bad("names no secret".into()));
        }
        let region = id
            .strip_prefix("arn:")
            .and_then(|rest| rest.split(':').nth(2))
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        if id.starts_with("arn:") && region.is_none() {
            return Err(bad("is an ARN without a region".into()));
        }
        Ok(Self { id: id.to_owned(), region, version })
    }
}

/// Reads `aws-sm:` references. The SDK configuration is loaded once, on first use.
#[derive(Debug, Default)]
pub struct AwsSource {
    config: OnceCell<aws_config::SdkConfig>,
}

impl AwsSource {
    /// A source that loads the SDK's default configuration when first used.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    async fn client(&self, region: Option<&str>) -> Client {
        let config = self.config.get_or_init(|| aws_config::defaults(BehaviorVersion::latest()).load()).await;
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(config);
        if let Some(region) = region {
            builder = builder.region(Region::new(region.to_owned()));
        }
        Client::from_conf(builder.build())
    }
}

impl SecretSource for AwsSource {
    fn schemes(&self) -> &'static [launcher_core::Scheme] {
        &[launcher_core::Scheme::AwsSm]
    }

    async fn fetch(&self, reference: &Reference) -> Result<Document, SourceError> {
        let id = SecretId::parse(reference)?;
        let client = self.client(id.region.as_deref()).await;
        let mut request = client.get_secret_value().secret_id(&id.id);
        request = match &id.version {
            Version::Current => request,
            Version::Stage(stage) => request.version_stage(stage),
            Version::Id(version) => request.version_id(version),
        };
        let mut output = request.send().await.map_err(|e| map_error(&e, reference))?;
        if let Some(text) = output.secret_string.take() {
            return Ok(Document::Blob(SecretBytes::new(text.into_bytes())));
        }
        if let Some(blob) = output.secret_binary.take() {
            return Ok(Document::Blob(SecretBytes::new(blob.into_inner())));
        }
        Err(SourceError::bad_content(reference, "has neither SecretString nor SecretBinary"))
    }
}

fn map_error<E, R>(error: &SdkError<E, R>, reference: &Reference) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let reference_text = reference.to_string();
    let store = "AWS Secrets Manager".to_owned();
    match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let message = err.message().unwrap_or_default().to_owned();
            match err.code().unwrap_or_default() {
                "ResourceNotFoundException" => SourceError::NotFound { reference: reference_text },
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException" => SourceError::Denied { reference: reference_text, store, detail: message },
                "DecryptionFailure" => SourceError::Denied {
                    reference: reference_text,
                    store,
                    detail: format!("KMS could not decrypt the secret: {message}"),
                },
                "ThrottlingException" | "InternalServiceError" | "ServiceUnavailable" => {
                    SourceError::Unreachable { reference: reference_text, store, source: message.into() }
                }
                code => SourceError::Config {
                    reference: reference_text,
                    problem: format!("AWS Secrets Manager refused the request: {code}: {message}"),
                },
            }
        }
        SdkError::ConstructionFailure(_) => SourceError::Config {
            reference: reference_text,
            problem: format!("cannot build the AWS request: {}", launcher_core::error_chain(error)),
        },
        _ => {
            let text = launcher_core::error_chain(error);
            if text.contains("credentials") {
                SourceError::Config { reference: reference_text, problem: format!("no usable AWS credentials: {text}") }
            } else {
                SourceError::Unreachable { reference: reference_text, store, source: text.into() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SecretId, SourceError> {
        SecretId::parse(&Reference::parse(text).unwrap())
    }

    #[test]
    fn names_arns_and_versions() {
        let s = parse("aws-sm:prod/app/db").unwrap();
        assert_eq!((s.id.as_str(), s.region, s.version), ("prod/app/db", None, Version::Current));
        let s =
            parse("aws-sm:arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/db-AbCdEf#password").unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.id, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/db-AbCdEf");
        assert_eq!(parse("aws-sm:db?version-stage=AWSPREVIOUS").unwrap().version, Version::Stage("AWSPREVIOUS".into()));
        assert_eq!(parse("aws-sm:db?version-id=abc").unwrap().version, Version::Id("abc".into()));
        assert!(parse("aws-sm:db?stage=x").unwrap_err().to_string().contains("?version-stage=STAGE"));
        assert!(parse("aws-sm:arn:aws:secretsmanager::1:secret:x").is_err());
    }
}
