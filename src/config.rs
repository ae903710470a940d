//! The TOML configuration file (`--config PATH`, `LAUNCHER_CONFIG`): every option the flags
//! have, under the flag's name (`vault-addr = "…"`), so that a systemd unit or a Dockerfile can
//! say `launcher --config /etc/launcher/app.toml -- /usr/bin/app`. A flag wins over its
//! environment variable, which wins over the file. Unknown keys are errors naming the key and
//! its line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{LogFormat, Options, PasswordVia};
use crate::error::{Error, Exit};

/// The file's content. Field names are the long flags'.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    credentials: Option<String>,
    ca: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
    user: Option<String>,
    vault_addr: Option<String>,
    vault_token_file: Option<PathBuf>,
    vault_cacert: Option<PathBuf>,
    vault_auth: Option<crate::cli::VaultAuth>,
    vault_auth_mount: Option<String>,
    vault_role_id_file: Option<PathBuf>,
    vault_secret_id_file: Option<PathBuf>,
    vault_secret_id_wrapped: Option<bool>,
    vault_role: Option<String>,
    vault_jwt_file: Option<PathBuf>,
    connect_timeout: Option<u64>,
    #[serde(default, deserialize_with = "duration")]
    wait: Option<Duration>,
    expiry_warning: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    min_ttl: Option<Duration>,
    export_lease: Option<bool>,
    password_via: Option<PasswordVia>,
    database_url: Option<String>,
    runtime_dir: Option<PathBuf>,
    pristine: Option<bool>,
    #[serde(default)]
    keep_env: Vec<String>,
    log_format: Option<LogFormat>,
    verbose: Option<bool>,
    quiet: Option<bool>,
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    crate::plan::parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}

/// Reads and parses the file.
pub fn load(path: &Path) -> Result<ConfigFile, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(Exit::Config, e).context(format!("config {}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let place = line.map(|l| format!(", line {l}")).unwrap_or_default();
        Error::msg(Exit::Config, format!("config {}{place}: {}", path.display(), e.message().trim()))
    })
}

impl ConfigFile {
    /// Fills every option the command line and the environment left unset.
    pub fn fill(self, o: &mut Options) {
        fn or<T>(slot: &mut Option<T>, value: Option<T>) {
            if slot.is_none() {
                *slot = value;
            }
        }
        or(&mut o.credentials, self.credentials);
        or(&mut o.ca, self.ca);
        or(&mut o.host, self.host);
        or(&mut o.port, self.port);
        or(&mut o.dbname, self.dbname);
        or(&mut o.user, self.user);
        or(&mut o.vault_addr, self.vault_addr);
        or(&mut o.vault_token_file, self.vault_token_file);
        or(&mut o.vault_cacert, self.vault_cacert);
        or(&mut o.vault_auth, self.vault_auth);
        or(&mut o.vault_auth_mount, self.vault_auth_mount);
        or(&mut o.vault_role_id_file, self.vault_role_id_file);
        or(&mut o.vault_secret_id_file, self.vault_secret_id_file);
        or(&mut o.vault_role, self.vault_role);
        or(&mut o.vault_jwt_file, self.vault_jwt_file);
        o.vault_secret_id_wrapped |= self.vault_secret_id_wrapped.unwrap_or(false);
        or(&mut o.connect_timeout, self.connect_timeout);
        or(&mut o.wait, self.wait);
        or(&mut o.expiry_warning, self.expiry_warning);
        or(&mut o.min_ttl, self.min_ttl);
        o.export_lease |= self.export_lease.unwrap_or(false);
        or(&mut o.password_via, self.password_via);
        or(&mut o.database_url, self.database_url);
        or(&mut o.runtime_dir, self.runtime_dir);
        or(&mut o.log_format, self.log_format);
        o.pristine |= self.pristine.unwrap_or(false);
        o.verbose |= self.verbose.unwrap_or(false);
        o.quiet |= self.quiet.unwrap_or(false);
        if o.keep_env.is_empty() {
            o.keep_env = self.keep_env;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("launcher-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_fills_the_rest() {
        let path = write(
            "ok.toml",
            "credentials = \"vault:secret/a\"\nport = 6432\nwait = \"2m\"\npassword-via = \"passfile\"\nkeep-env = [\"A\"]\n",
        );
        let mut o = crate::cli::Cli::parse_from(["launcher", "--port", "7000", "--", "true"]).options;
        load(&path).unwrap().fill(&mut o);
        assert_eq!(o.credentials.as_deref(), Some("vault:secret/a"));
        assert_eq!(o.port, Some(7000));
        assert_eq!(o.wait, Some(Duration::from_mins(2)));
        assert_eq!(o.password_via, Some(PasswordVia::Passfile));
        assert_eq!(o.keep_env, ["A"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key_and_line() {
        let path = write("bad.toml", "ca = \"file:/x\"\n\nvault-adress = \"http://127.0.0.1:8200\"\n");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("bad.toml, line 3: unknown field `vault-adress`"), "{e}");
        let path = write("bad2.toml", "wait = \"soon\"\n");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("bad2.toml, line 1: \"soon\" is not a duration"), "{e}");
        let path = write("bad3.toml", "password-via = \"carrier-pigeon\"\n");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("line 1: unknown variant `carrier-pigeon`"), "{e}");
    }
}
