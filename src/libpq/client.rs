//! The client certificate libpq presents on its own (`PGSSLCERT`/`PGSSLKEY`, else
//! `~/.postgresql/postgresql.{crt,key}`), found and judged as libpq's `initialize_SSL` finds and
//! judges it, in libpq's words.

use std::path::PathBuf;

use crate::error::{Error, Exit};
use crate::tls::ClientIdentity;

/// The client certificate libpq presents on its own when it exists: `PGSSLCERT`, else
/// `~/.postgresql/postgresql.crt`, with `PGSSLKEY`, else `~/.postgresql/postgresql.key`.
#[derive(Debug, Clone, Default)]
pub struct ClientPlan {
    /// The certificate file.
    pub cert: Option<PathBuf>,
    /// Its key file.
    pub key: Option<PathBuf>,
}

/// The client certificate libpq presents by itself (`PGSSLCERT` or
/// `~/.postgresql/postgresql.crt`, and its key), judged as libpq's `initialize_SSL` judges it:
/// no certificate file is no client certificate; a certificate without its key, or a key
/// others may read, is an error in libpq's words.
pub fn client_files(plan: &ClientPlan) -> Result<Option<ClientIdentity>, Error> {
    use std::os::unix::fs::MetadataExt;
    let Some(cert) = &plan.cert else { return Ok(None) };
    match std::fs::metadata(cert) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(e) => {
            return Err(Error::msg(
                Exit::Config,
                format!("could not open certificate file \"{}\": {e}", cert.display()),
            ));
        }
    }
    // libpq loads the certificate before it looks for the key: one it cannot read (a
    // directory, no permission) is that error, not a missing key.
    let chain = ClientIdentity::read_chain(cert).map_err(|e| Error::msg(Exit::Config, e))?;
    let Some(key) = &plan.key else {
        return Err(Error::msg(
            Exit::Config,
            format!("certificate present, but not private key file for \"{}\"", cert.display()),
        ));
    };
    let meta = std::fs::metadata(key).map_err(|e| {
        let text = if e.kind() == std::io::ErrorKind::NotFound {
            format!("certificate present, but not private key file \"{}\"", key.display())
        } else {
            format!("could not stat private key file \"{}\": {e}", key.display())
        };
        Error::msg(Exit::Config, text)
    })?;
    if !meta.is_file() {
        return Err(Error::msg(Exit::Config, format!("private key file \"{}\" is not a regular file", key.display())));
    }
    // libpq: a root-owned key may be group-readable (0640), any other must be 0600 or less.
    let forbidden = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & forbidden != 0 {
        return Err(Error::msg(
            Exit::Config,
            format!(
                "private key file \"{}\" has group or world access; file must have permissions u=rw (0600) or less \
                 if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root",
                key.display()
            ),
        ));
    }
    // How loading the key fails (unreadable, not the certificate's) is the user's
    // configuration too, not a secret's content.
    ClientIdentity::with_key(&chain, key).map(Some).map_err(|e| Error::msg(Exit::Config, e))
}
