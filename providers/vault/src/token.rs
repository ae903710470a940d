//! Finding the Vault token the way the Vault CLI does: an explicit token file, then
//! `VAULT_TOKEN` / `BAO_TOKEN`, then the token helper's file `~/.vault-token`.

use std::path::{Path, PathBuf};

use launcher_core::{SecretString, SourceError};

/// Where the token came from (logged; the token itself never is).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenOrigin {
    /// `--vault-token-file`.
    File(PathBuf),
    /// An environment variable, by name.
    Env(&'static str),
    /// `~/.vault-token`.
    Helper(PathBuf),
}

impl std::fmt::Display for TokenOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) | Self::Helper(p) => write!(f, "{}", p.display()),
            Self::Env(name) => f.write_str(name),
        }
    }
}

/// Picks the token. `env` looks a variable up (injected so that this is testable and so the
/// caller decides which environment counts).
pub fn resolve_token(
    token_file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<(SecretString, TokenOrigin), SourceError> {
    if let Some(path) = token_file {
        return Ok((crate::auth::read_secret_file(path, "Vault token")?, TokenOrigin::File(path.to_owned())));
    }
    for name in ["VAULT_TOKEN", "BAO_TOKEN"] {
        if let Some(value) = env(name).filter(|v| !v.is_empty()) {
            return Ok((SecretString::new(value), TokenOrigin::Env(name)));
        }
    }
    if let Some(home) = home {
        let helper = home.join(".vault-token");
        if helper.is_file() {
            return Ok((crate::auth::read_secret_file(&helper, "Vault token")?, TokenOrigin::Helper(helper)));
        }
    }
    Err(SourceError::Config {
        reference: "Vault token".into(),
        problem: "none found: set VAULT_TOKEN (or BAO_TOKEN), pass --vault-token-file, or log in so that ~/.vault-token exists".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_file_then_env_then_helper() {
        let dir = std::env::temp_dir().join(format!("launcher-token-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tok");
        std::fs::write(&file, "from-file\n").unwrap();
        std::fs::write(dir.join(".vault-token"), "from-helper").unwrap();
        let env = |n: &str| (n == "BAO_TOKEN").then(|| "from-bao".to_owned());

        let (t, o) = resolve_token(Some(&file), env, Some(&dir)).unwrap();
        assert_eq!((t.expose(), o), ("from-file", TokenOrigin::File(file.clone())));
        let (t, o) = resolve_token(None, env, Some(&dir)).unwrap();
        assert_eq!((t.expose(), o), ("from-bao", TokenOrigin::Env("BAO_TOKEN")));
        let (t, _) = resolve_token(None, |_| None, Some(&dir)).unwrap();
        assert_eq!(t.expose(), "from-helper");
        let e = resolve_token(None, |_| None, None).unwrap_err();
        assert!(e.to_string().contains("VAULT_TOKEN"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
