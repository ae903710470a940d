//! The TOML configuration file (`--config PATH`, `LAUNCHER_CONFIG`): every option the flags
//! have, under the flag's name (`vault-addr = "…"`), so that a systemd unit or a Dockerfile can
//! say `launcher --config /etc/launcher/app.toml -- /usr/bin/app`. A flag wins over its
//! environment variable, which wins over the file. Unknown keys are errors naming the key and
//! its line. The keys are not written here: the file is read into [`Options`] itself, whose
//! serde names are the long flags' (a test holds them to `Cli::command()`).

use std::path::Path;

use crate::cli::Options;
use crate::error::{Error, Exit};

/// Reads and parses the file.
pub fn load(path: &Path) -> Result<Options, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(Exit::Config, e).context(format!("config {}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let place = line.map(|l| format!(", line {l}")).unwrap_or_default();
        Error::msg(Exit::Config, format!("config {}{place}: {}", path.display(), e.message().trim()))
    })
}

/// `given` (the command line and the environment) with every option it left unset (`None`,
/// `false`, empty) taken from `file`.
pub fn fill(given: &mut Options, file: Options) -> Result<(), Error> {
    let internal = |e: serde_json::Error| Error::new(Exit::Software, e).context("merging the config file");
    let serde_json::Value::Object(mut merged) = serde_json::to_value(&*given).map_err(internal)? else {
        return Err(Error::msg(Exit::Software, "options are not an object"));
    };
    let serde_json::Value::Object(from_file) = serde_json::to_value(file).map_err(internal)? else {
        return Err(Error::msg(Exit::Software, "options are not an object"));
    };
    for (key, value) in from_file {
        let unset = match merged.get(&key) {
            None | Some(serde_json::Value::Null | serde_json::Value::Bool(false)) => true,
            Some(serde_json::Value::Array(items)) => items.is_empty(),
            Some(_) => false,
        };
        if unset {
            merged.insert(key, value);
        }
    }
    let config = given.config.take();
    *given = serde_json::from_value(serde_json::Value::Object(merged)).map_err(internal)?;
    given.config = config;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::cli::PasswordVia;
    use clap::{CommandFactory, Parser};

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
            "credentials = \"vault:secret/a\"\nport = 6432\nwait = \"2m\"\npassword-via = \"passfile\"\n\
             keep-env = [\"A\"]\nclient-cert = \"vault-pki:pki/issue/app\"\npristine = true\n",
        );
        let mut o = crate::cli::Cli::parse_from(["launcher", "--port", "7000", "--", "true"]).options;
        fill(&mut o, load(&path).unwrap()).unwrap();
        assert_eq!(o.credentials.as_deref(), Some("vault:secret/a"));
        assert_eq!(o.port, Some(7000));
        assert_eq!(o.wait, Some(Duration::from_mins(2)));
        assert_eq!(o.password_via, Some(PasswordVia::Passfile));
        assert_eq!(o.keep_env, ["A"]);
        assert_eq!(o.client_cert.as_deref(), Some("vault-pki:pki/issue/app"), "every option is a key");
        assert!(o.pristine);
        let path = write("supervise.toml", "supervise = true\non-change = \"signal:HUP\"\nstop-timeout = \"30s\"\n");
        let mut o = crate::cli::Cli::parse_from(["launcher", "--", "true"]).options;
        fill(&mut o, load(&path).unwrap()).unwrap();
        assert!(o.supervise);
        assert_eq!(o.on_change, Some(crate::cli::OnChange::Signal(nix::sys::signal::Signal::SIGHUP)));
        assert_eq!(o.stop_timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn every_long_option_is_a_config_key_and_the_readme_lists_it() {
        let command = crate::cli::Cli::command();
        let mut longs: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .filter(|l| l != "config" && l != "help" && l != "version")
            .collect();
        longs.sort();
        let serde_json::Value::Object(keys) = serde_json::to_value(Options::default()).unwrap() else { panic!() };
        let mut keys: Vec<String> = keys.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, longs, "config keys against the command line");
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = readme.split("\n## Options\n").nth(1).and_then(|s| s.split("\n## ").next()).unwrap();
        for long in longs.iter().chain(std::iter::once(&"config".to_owned())) {
            assert!(table.contains(&format!("| `--{long}")), "README's options table lacks --{long}");
        }
        let listed = table.lines().filter(|l| l.starts_with("| `--")).count();
        assert_eq!(listed, longs.len() + 1, "README lists an option the command line does not have");
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
        let path = write("bad5.toml", "supervise = true\non-change = \"signal:NOPE\"\n");
        assert!(load(&path).unwrap_err().to_string().contains("bad5.toml, line 2: \"NOPE\" is not a signal"));
        let path = write("bad4.toml", "config = \"/etc/other.toml\"\n");
        assert!(load(&path).unwrap_err().to_string().contains("unknown field `config`"));
    }
}
