//! Local and mounted files as a secret source.
//!
//! `file:PATH` is either
//! - a file: its whole content (a PEM bundle, or a JSON object when a `#field` is asked for), or
//! - a directory of one-value files, whose names are the field names: Docker/Compose secrets
//!   (`/run/secrets`), a Kubernetes secret volume (its `..data` symlinks are followed, dot
//!   entries skipped), systemd's `$CREDENTIALS_DIRECTORY`. Trailing newlines are trimmed.
//!
//! Every file is capped at [`MAX_FILE_SIZE`]. A file that holds more than certificates and is
//! readable by others (looser than 0640) is reported through the warning callback.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use launcher_core::{Document, Fields, Reference, SecretBytes, SecretSource, SecretString, SourceError};

/// Files larger than this are refused: a CA bundle or a credentials file is a few KiB, and a
/// cap keeps a wrong path (a log file, a device) from being slurped into memory.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Reads `file:` references from the local file system.
pub struct FileSource {
    warn: Box<dyn Fn(String) + Send + Sync>,
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource").finish_non_exhaustive()
    }
}

impl FileSource {
    /// A source that reports permission problems through `warn` (names and modes only).
    pub fn new(warn: impl Fn(String) + Send + Sync + 'static) -> Self {
        Self { warn: Box::new(warn) }
    }

    fn read_file(&self, path: &Path, reference: &Reference) -> Result<SecretBytes, SourceError> {
        let io =
            |source| SourceError::Io { reference: reference.to_string(), path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode();
        let mut buf = Vec::new();
        file.take(MAX_FILE_SIZE + 1).read_to_end(&mut buf).map_err(io)?;
        let bytes = SecretBytes::new(buf);
        if bytes.expose().len() as u64 > MAX_FILE_SIZE {
            return Err(SourceError::bad_content(
                reference,
                format!("{} is larger than {MAX_FILE_SIZE} bytes", path.display()),
            ));
        }
        if mode & 0o037 != 0 && !only_certificates(bytes.expose()) {
            (self.warn)(format!(
                "{} is readable by others (mode {:04o}); 0640 or tighter is recommended for secrets",
                path.display(),
                mode & 0o7777
            ));
        }
        Ok(bytes)
    }

    fn read_dir(&self, dir: &Path, reference: &Reference) -> Result<Document, SourceError> {
        let io = |source| SourceError::Io { reference: reference.to_string(), path: dir.display().to_string(), source };
        let mut object = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) else { continue };
            // Kubernetes volumes are symlinks into ..data: follow them, and skip directories.
            let path = entry.path();
            if !std::fs::metadata(&path).map_err(io)?.is_file() {
                continue;
            }
            let bytes = self.read_file(&path, reference)?;
            let text = String::from_utf8(bytes.expose().to_vec())
                .map_err(|_| SourceError::bad_content(&reference.with_field(name), "is not UTF-8 text"))?;
            let value = SecretString::new(text);
            let trimmed = value.expose().trim_end_matches(['\n', '\r']);
            object.insert(name.to_owned(), serde_json::Value::String(trimmed.to_owned()));
        }
        Ok(Document::Fields(Fields::from_json_object(object.into_iter().collect())))
    }
}

/// Whether the bytes are PEM certificates (public) and nothing else. A JSON document is never
/// that, whatever it holds: a certificate in one of its fields says nothing of the others.
fn only_certificates(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    !text.trim_start().starts_with('{')
        && text.contains("-----BEGIN CERTIFICATE-----")
        && text.lines().filter(|l| l.starts_with("-----BEGIN ")).all(|l| l == "-----BEGIN CERTIFICATE-----")
}

impl SecretSource for FileSource {
    fn schemes(&self) -> &'static [launcher_core::Scheme] {
        &[launcher_core::Scheme::File]
    }

    async fn fetch(&self, reference: &Reference) -> Result<Document, SourceError> {
        let path = Path::new(reference.locator());
        if path.is_dir() { self.read_dir(path, reference) } else { self.read_file(path, reference).map(Document::Blob) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_pem_certificates_are_public() {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(super::only_certificates(cert.as_bytes()));
        let key = format!("{cert}-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
        assert!(!super::only_certificates(key.as_bytes()));
        let json = serde_json::json!({ "password": "pw", "ca": cert }).to_string();
        assert!(!super::only_certificates(json.as_bytes()), "a JSON secret with a certificate field");
    }
}
