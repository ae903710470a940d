//! libpq's password file (`PGPASSFILE`, else `~/.pgpass`), read as libpq reads it, so that
//! `launcher check` connects exactly when psql would. Only used when no password came from a
//! secret or `PGPASSWORD`.
//!
//! Format: `hostname:port:database:username:password`; `*` matches anything; `\` escapes `:`
//! and `\`; `#` starts a comment line. A file readable by group or others is ignored, with a
//! warning, as libpq does.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use launcher_core::SecretString;

use crate::error::{Error, Exit};

/// The password for this connection, if the file has one.
#[must_use]
pub fn lookup(file: &Path, host: &str, port: u16, dbname: &str, user: &str) -> Option<SecretString> {
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        crate::log::warn(format!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            file.display()
        ));
        return None;
    }
    let text = SecretString::new(std::fs::read_to_string(file).ok()?);
    let port = port.to_string();
    text.expose().lines().filter(|l| !l.is_empty() && !l.starts_with('#')).find_map(|line| {
        let rest = matches(line, host)?;
        let rest = matches(rest, &port)?;
        let rest = matches(rest, dbname)?;
        let rest = matches(rest, user)?;
        Some(SecretString::new(unescape(rest)))
    })
}

/// One `.pgpass` line for this connection (any database), each field escaped as libpq reads it.
/// libpq reads the file line by line and strips every trailing `\r` and `\n` before it
/// unescapes: a line break anywhere, or a password ending in a carriage return, cannot be
/// written so that it reads back, and is refused rather than written wrong.
pub fn line(host: &str, port: u16, user: &str, password: &SecretString) -> Result<SecretString, Error> {
    let refuse = |what: &str, problem: &str| {
        Error::msg(
            Exit::DataErr,
            format!(
                "--password-via passfile: the {what} {problem}, which a .pgpass file cannot hold (libpq reads it line \
                 by line); use --password-via env"
            ),
        )
    };
    for (what, value) in [("host name", host), ("user name", user), ("password", password.expose())] {
        if value.contains('\n') {
            return Err(refuse(what, "holds a line break"));
        }
    }
    if password.expose().ends_with('\r') {
        return Err(refuse("password", "ends with a carriage return"));
    }
    let esc = |v: &str| v.replace('\\', "\\\\").replace(':', "\\:");
    // A line starting with `#` is a comment to libpq; an escaped `#` is the character.
    let host = match esc(host) {
        h if h.starts_with('#') => format!("\\{h}"),
        h => h,
    };
    Ok(SecretString::new(format!("{host}:{port}:*:{}:{}\n", esc(user), esc(password.expose()))))
}

/// `pwdfMatchesString`: if `line` starts with a field matching `value` (or `*`), the rest.
fn matches<'a>(line: &'a str, value: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut chars = line.char_indices();
    let mut want = value.chars();
    while let Some((i, c)) = chars.next() {
        let c = match c {
            ':' => return want.next().is_none().then(|| &line[i + 1..]),
            '\\' => chars.next()?.1,
            c => c,
        };
        if want.next() != Some(c) {
            return None;
        }
    }
    None
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            ':' => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_lines_read_back() {
        let dir = std::env::temp_dir().join(format!("launcher-pgpass-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        let pw = SecretString::new(r"a:b\c@d".to_owned());
        std::fs::write(&file, line("db:1", 5432, "u:x", &pw).unwrap().expose()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&file, "db:1", 5432, "anydb", "u:x").unwrap().expose(), r"a:b\c@d");
        std::fs::write(&file, line("#db", 5432, "u", &pw).unwrap().expose()).unwrap();
        assert_eq!(lookup(&file, "#db", 5432, "anydb", "u").unwrap().expose(), r"a:b\c@d", "not a comment");
        for (host, user, password) in [("db", "u", "a\nb"), ("db", "u\n", "p"), ("d\nb", "u", "p"), ("db", "u", "p\r")]
        {
            let e = line(host, 5432, user, &SecretString::new(password.to_owned())).unwrap_err();
            assert_eq!(e.exit(), Exit::DataErr);
            assert!(e.to_string().contains("which a .pgpass file cannot hold"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn matches_like_libpq() {
        let dir = std::env::temp_dir().join(format!("launcher-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(&file, "# comment\nother:5432:*:app:wrong\ndb\\:x:*:*:app:p\\:w\\\\d\nlocalhost:*:*:*:star\n")
            .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&file, "db:x", 5432, "prod", "app").unwrap().expose(), "p:w\\d");
        assert_eq!(lookup(&file, "localhost", 1, "d", "u").unwrap().expose(), "star");
        assert!(lookup(&file, "nope", 5432, "prod", "app").is_none());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(lookup(&file, "localhost", 1, "d", "u").is_none(), "group/world readable files are ignored");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
