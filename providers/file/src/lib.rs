//! Local and mounted files as a secret source: `file:PATH` reads the whole file (a PEM bundle,
//! or a JSON object when a `#field` is asked for).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Read;

use launcher_core::{Document, Reference, SecretBytes, SecretSource, SourceError};

/// Files larger than this are refused: a CA bundle or a credentials file is a few KiB, and a
/// cap keeps a wrong path (a log file, a device) from being slurped into memory.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Reads `file:` references from the local file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileSource;

impl FileSource {
    fn read(reference: &Reference) -> Result<Document, SourceError> {
        let path = reference.locator();
        let io = |source| SourceError::Io { reference: reference.to_string(), path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut buf = Vec::new();
        file.take(MAX_FILE_SIZE + 1).read_to_end(&mut buf).map_err(io)?;
        let bytes = SecretBytes::new(buf);
        if bytes.expose().len() as u64 > MAX_FILE_SIZE {
            return Err(SourceError::bad_content(reference, format!("is larger than {MAX_FILE_SIZE} bytes")));
        }
        Ok(Document::Blob(bytes))
    }
}

impl SecretSource for FileSource {
    async fn fetch(&self, reference: &Reference) -> Result<Document, SourceError> {
        Self::read(reference)
    }
}
