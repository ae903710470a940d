//! The one syntax for naming a secret, shared by flags, environment variables and config files:
//! `SCHEME:LOCATOR[#FIELD]`, e.g. `vault:secret/app/db#password` or `file:/run/secrets/ca.pem`.

use std::fmt;

/// Which kind of source a reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// HashiCorp Vault or OpenBao: the locator is a path as `vault read` / `vault kv get` take it.
    Vault,
    /// A local file: the locator is a path.
    File,
    /// AWS Secrets Manager: the locator is a secret name or ARN.
    AwsSm,
    /// A Vault PKI mount: `MOUNT` for its CA chain, `MOUNT/issue/ROLE` to issue a certificate.
    VaultPki,
}

impl Scheme {
    /// Every scheme with its prefix, in the order they are listed to users.
    pub const ALL: &'static [(Scheme, &'static str)] =
        &[(Scheme::Vault, "vault"), (Scheme::File, "file"), (Scheme::AwsSm, "aws-sm"), (Scheme::VaultPki, "vault-pki")];

    /// The prefix users write before the colon.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        Self::ALL.iter().find(|(s, _)| *s == self).map_or("?", |(_, p)| p)
    }
}

/// A parsed secret reference. It holds no secret itself: it is safe to log and to print in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    scheme: Scheme,
    locator: String,
    field: Option<String>,
}

/// Why a reference could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceError {
    /// No `scheme:` prefix.
    #[error("\"{0}\" has no source prefix; expected one of {known}", known = known_schemes())]
    MissingScheme(String),
    /// A prefix nobody serves.
    #[error("\"{0}\" is not a known source; expected one of {known}", known = known_schemes())]
    UnknownScheme(String),
    /// Nothing after the prefix.
    #[error("\"{0}\" names no path after the source prefix")]
    EmptyLocator(String),
    /// A `#` with nothing after it.
    #[error("\"{0}\" has an empty field name after '#'")]
    EmptyField(String),
}

fn known_schemes() -> String {
    Scheme::ALL.iter().map(|(_, p)| format!("{p}:")).collect::<Vec<_>>().join(", ")
}

impl Reference {
    /// Parses `SCHEME:LOCATOR[#FIELD]`. The field is what follows the last `#`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let (prefix, rest) = text.split_once(':').ok_or_else(|| ReferenceError::MissingScheme(text.to_owned()))?;
        let scheme = Scheme::ALL
            .iter()
            .find(|(_, p)| *p == prefix)
            .map(|(s, _)| *s)
            .ok_or_else(|| ReferenceError::UnknownScheme(prefix.to_owned()))?;
        let (locator, field) = match rest.rsplit_once('#') {
            Some((_, "")) => return Err(ReferenceError::EmptyField(text.to_owned())),
            Some((l, f)) => (l, Some(f.to_owned())),
            None => (rest, None),
        };
        if locator.is_empty() {
            return Err(ReferenceError::EmptyLocator(text.to_owned()));
        }
        Ok(Self { scheme, locator: locator.to_owned(), field })
    }

    /// The source kind.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The path (or other locator) inside the source.
    #[must_use]
    pub fn locator(&self) -> &str {
        &self.locator
    }

    /// The field after `#`, if any.
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Whether `other` names the same secret, perhaps another field of it: one read serves both.
    #[must_use]
    pub fn same_document(&self, other: &Self) -> bool {
        self.scheme == other.scheme && self.locator == other.locator
    }

    /// The same reference pointing at one field (used to name a field in errors).
    #[must_use]
    pub fn with_field(&self, field: &str) -> Self {
        Self { field: Some(field.to_owned()), ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scheme.prefix(), self.locator)?;
        if let Some(field) = &self.field {
            write!(f, "#{field}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_document_ignores_only_the_field() {
        let r = |t| Reference::parse(t).unwrap();
        assert!(r("vault:secret/app/db").same_document(&r("vault:secret/app/db#ca_pem")));
        assert!(
            r("aws-sm:prod/db?version-stage=AWSPREVIOUS#a")
                .same_document(&r("aws-sm:prod/db?version-stage=AWSPREVIOUS#b"))
        );
        assert!(!r("aws-sm:prod/db#a").same_document(&r("aws-sm:prod/db?version-stage=AWSPREVIOUS#a")));
        assert!(!r("vault:secret/app/db").same_document(&r("vault:secret/app/dbx#ca_pem")));
        assert!(!r("file:/run/secrets/db").same_document(&r("vault:/run/secrets/db")));
    }

    #[test]
    fn parses_scheme_locator_and_field() {
        let r = Reference::parse("vault:secret/app/db#ca_pem").unwrap();
        assert_eq!(r.scheme(), Scheme::Vault);
        assert_eq!(r.locator(), "secret/app/db");
        assert_eq!(r.field(), Some("ca_pem"));
        assert_eq!(r.to_string(), "vault:secret/app/db#ca_pem");
        let r = Reference::parse("file:/etc/ssl/ca.pem").unwrap();
        assert_eq!((r.scheme(), r.locator(), r.field()), (Scheme::File, "/etc/ssl/ca.pem", None));
    }

    #[test]
    fn field_is_after_the_last_hash() {
        let r = Reference::parse("file:/tmp/a#b.json#user").unwrap();
        assert_eq!((r.locator(), r.field()), ("/tmp/a#b.json", Some("user")));
    }

    #[test]
    fn rejects_malformed_references() {
        assert!(matches!(Reference::parse("secret/app"), Err(ReferenceError::MissingScheme(_))));
        assert!(matches!(Reference::parse("s3:bucket/x"), Err(ReferenceError::UnknownScheme(p)) if p == "s3"));
        assert!(matches!(Reference::parse("vault:"), Err(ReferenceError::EmptyLocator(_))));
        assert!(matches!(Reference::parse("vault:secret/x#"), Err(ReferenceError::EmptyField(_))));
        let msg = Reference::parse("s3:x").unwrap_err().to_string();
        assert!(msg.contains("vault:, file:, aws-sm:, vault-pki:"), "{msg}");
    }
}
