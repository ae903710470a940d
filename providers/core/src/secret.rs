//! Containers for secret values: zeroized on drop, redacted in `Debug`, no `Display`.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Reference, SourceError};

/// A secret text value (a password, a token, a PEM key).
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    /// Takes ownership of `value` without copying it, so no unzeroized copy is left behind.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value. Callers must not log it or put it into an error.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The same value as bytes, moved rather than copied.
    #[must_use]
    pub fn into_bytes(mut self) -> SecretBytes {
        SecretBytes(std::mem::take(&mut self.0).into_bytes())
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Secret bytes: a file's or a secret's whole content.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `value` without copying it.
    #[must_use]
    pub fn new(value: Vec<u8>) -> Self {
        Self(value)
    }

    /// The bytes. Callers must not log them or put them into an error.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted {} bytes>)", self.0.len())
    }
}

/// Named secret values, e.g. a Vault KV secret. Names are not secret; values are.
#[derive(Debug, Clone, Default)]
pub struct Fields(BTreeMap<String, SecretString>);

impl Fields {
    /// Moves the values of a JSON object into secret containers. Strings are moved, not copied;
    /// numbers and booleans become their JSON text; nested values their JSON serialization;
    /// `null` fields are left out.
    #[must_use]
    pub fn from_json_object(object: serde_json::Map<String, serde_json::Value>) -> Self {
        let mut fields = BTreeMap::new();
        for (name, value) in object {
            let text = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                other => {
                    let text = other.to_string();
                    zeroize_json(other);
                    text
                }
            };
            fields.insert(name, SecretString::new(text));
        }
        Self(fields)
    }

    /// One field's value.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name)
    }

    /// The first present field among `names` (aliases such as `username|user`), with its name.
    #[must_use]
    pub fn first_of<'a>(&self, names: &[&'a str]) -> Option<(&'a str, &SecretString)> {
        names.iter().find_map(|n| self.0.get(*n).map(|v| (*n, v)))
    }

    /// The field names, comma-separated, for error messages.
    #[must_use]
    pub fn names(&self) -> String {
        if self.0.is_empty() {
            return "none".to_owned();
        }
        self.0.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }

    /// Removes and returns one field.
    pub fn take(&mut self, name: &str) -> Option<SecretString> {
        self.0.remove(name)
    }
}

/// Wipes the strings inside a JSON value we are about to drop.
fn zeroize_json(value: serde_json::Value) {
    match value {
        serde_json::Value::String(mut s) => s.zeroize(),
        serde_json::Value::Array(items) => items.into_iter().for_each(zeroize_json),
        serde_json::Value::Object(map) => map.into_iter().for_each(|(_, v)| zeroize_json(v)),
        _ => {}
    }
}

/// What a source returns for a reference: named fields, or one opaque blob (a PEM file).
#[derive(Debug, Clone)]
pub enum Document {
    /// A set of named values (a KV secret, a JSON secret).
    Fields(Fields),
    /// One value (a file's content, a plain-text secret).
    Blob(SecretBytes),
}

impl Document {
    /// Turns the document into the fields it holds: a blob is parsed as a JSON object.
    pub fn into_fields(self, reference: &Reference) -> Result<Fields, SourceError> {
        match self {
            Self::Fields(f) => Ok(f),
            Self::Blob(bytes) => {
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(bytes.expose());
                match parsed {
                    Ok(serde_json::Value::Object(map)) => Ok(Fields::from_json_object(map)),
                    Ok(other) => {
                        zeroize_json(other);
                        Err(SourceError::bad_content(reference, "is not a JSON object"))
                    }
                    // serde_json's message quotes no input, only a position.
                    Err(e) => Err(SourceError::bad_content(
                        reference,
                        format!("is not a JSON object ({})", e.classify_name()),
                    )),
                }
            }
        }
    }

    /// The one value a reference names: the `#field` of the document, or the whole blob when
    /// no field is given.
    pub fn select(self, reference: &Reference) -> Result<SecretBytes, SourceError> {
        match (reference.field(), self) {
            (None, Self::Blob(bytes)) => Ok(bytes),
            (None, Self::Fields(fields)) => Err(SourceError::bad_content(
                reference,
                format!("holds several fields ({}); name one with #FIELD", fields.names()),
            )),
            (Some(field), doc) => {
                let mut fields = doc.into_fields(reference)?;
                let present = fields.names();
                let value = fields.take(field).ok_or_else(|| SourceError::MissingField {
                    reference: reference.to_string(),
                    field: field.to_owned(),
                    present,
                })?;
                Ok(value.into_bytes())
            }
        }
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let s = SecretString::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "SecretString(<redacted>)");
        let b = SecretBytes::new(b"hunter2".to_vec());
        assert!(!format!("{b:?}").contains("hunter2"));
        let map = serde_json::json!({"password": "hunter2", "port": 5432, "x": null});
        let f = Fields::from_json_object(map.as_object().unwrap().clone());
        assert!(!format!("{f:?}").contains("hunter2"));
        assert_eq!(f.names(), "password, port");
        assert_eq!(f.get("port").unwrap().expose(), "5432");
    }

    #[test]
    fn select_picks_a_field_or_the_blob() {
        let r = Reference::parse("file:/x.json#ca").unwrap();
        let doc = Document::Blob(SecretBytes::new(br#"{"ca":"PEM","user":"u"}"#.to_vec()));
        assert_eq!(doc.select(&r).unwrap().expose(), b"PEM");

        let r = Reference::parse("file:/x.json#nope").unwrap();
        let doc = Document::Blob(SecretBytes::new(br#"{"ca":"s3cr3t"}"#.to_vec()));
        let msg = doc.select(&r).unwrap_err().to_string();
        assert_eq!(msg, "file:/x.json#nope: field \"nope\" is missing (fields present: ca)");

        let r = Reference::parse("file:/x.pem#ca").unwrap();
        let doc = Document::Blob(SecretBytes::new(b"-----BEGIN s3cr3t".to_vec()));
        let msg = doc.select(&r).unwrap_err().to_string();
        assert!(msg.contains("is not a JSON object") && !msg.contains("s3cr3t"), "{msg}");
    }
}
