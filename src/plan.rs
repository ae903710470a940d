//! Flags + the inherited environment → a validated [`Plan`]. Pure: it reads no file and opens
//! no connection, so every rule here is testable on its own.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use launcher_core::Reference;

use crate::cli::Options;
use crate::error::{Error, Exit};
use crate::libpq::{Libpq, SessionAttrs};

/// The environment the launcher was started with (a snapshot; the launcher never changes its own).
#[derive(Clone, Default)]
pub struct ParentEnv {
    vars: Vec<(OsString, OsString)>,
}

impl std::fmt::Debug for ParentEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets (VAULT_TOKEN, PGPASSWORD): names only.
        f.debug_list().entries(self.vars.iter().map(|(k, _)| k)).finish()
    }
}

impl ParentEnv {
    /// This process's environment.
    #[must_use]
    pub fn from_process() -> Self {
        Self { vars: std::env::vars_os().collect() }
    }

    /// An environment given explicitly (tests).
    #[must_use]
    pub fn from_pairs<K: Into<OsString>, V: Into<OsString>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// A variable's value, if set, non-empty and UTF-8: libpq makes of an empty `PGHOST`,
    /// `PGPORT`, `PGSSLROOTCERT` and most of its variables what it makes of an unset one.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    /// A variable's value, if set and UTF-8, even empty: for the `PG*` variables whose empty
    /// value libpq takes as a value (`PGCHANNELBINDING=` is an error there, `PGSSLSNI=` turns
    /// SNI off), since the check must judge what libpq will.
    #[must_use]
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars.iter().rev().find(|(k, _)| k == OsStr::new(name)).and_then(|(_, v)| v.to_str())
    }

    /// Every variable, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }
}

/// Where the CA bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaPlan {
    /// Fetched from a source and written to the runtime directory.
    Fetch(Reference),
    /// A file the app already points at (`PGSSLROOTCERT`, or libpq's default
    /// `~/.postgresql/root.crt`): used in place.
    Existing(PathBuf),
}

/// Vault settings, gathered only when a reference needs Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultPlan {
    /// The address.
    pub address: String,
    /// `--vault-token-file`.
    pub token_file: Option<PathBuf>,
    /// The CA for an https:// Vault.
    pub ca_cert: Option<PathBuf>,
    /// `VAULT_NAMESPACE`.
    pub namespace: Option<String>,
    /// How to log in.
    #[cfg(feature = "vault")]
    pub auth: launcher_vault::Auth,
}

impl VaultPlan {
    /// Vault's settings from flags and Vault's own variables; the address is checked here.
    fn new(options: &Options, env: &ParentEnv) -> Result<Self, Error> {
        let plan = Self {
            address: options
                .vault_addr
                .clone()
                .or_else(|| env.get("VAULT_ADDR").or_else(|| env.get("BAO_ADDR")).map(str::to_owned))
                .unwrap_or_else(|| "https://127.0.0.1:8200".to_owned()),
            token_file: options.vault_token_file.clone(),
            ca_cert: options
                .vault_cacert
                .clone()
                .or_else(|| env.get("VAULT_CACERT").or_else(|| env.get("BAO_CACERT")).map(PathBuf::from)),
            namespace: env.get("VAULT_NAMESPACE").or_else(|| env.get("BAO_NAMESPACE")).map(str::to_owned),
            #[cfg(feature = "vault")]
            auth: vault_auth(options)?,
        };
        #[cfg(feature = "vault")]
        launcher_vault::check_address(&plan.address)
            .map_err(|e| Error::msg(Exit::Config, format!("Vault address: {e}")))?;
        Ok(plan)
    }
}

/// Connection settings given explicitly; they win over the secret and the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--dbname`.
    pub dbname: Option<String>,
    /// `--user`.
    pub user: Option<String>,
}

/// Everything a launch needs to know before it touches the world.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The credentials secret, if any (without one, `PG*` variables alone describe the
    /// connection, as for a plain libpq client).
    pub credentials: Option<Reference>,
    /// The CA bundle.
    pub ca: CaPlan,
    /// `--client-cert`: where to get a client certificate.
    pub client_cert: Option<Reference>,
    /// What the app's libpq will do with its environment.
    pub libpq: Libpq,
    /// Explicit connection settings.
    pub overrides: Overrides,
    /// Present when any reference is a Vault one.
    pub vault: Option<VaultPlan>,
    /// `--password-via`.
    pub password_via: crate::cli::PasswordVia,
    /// `--database-url`: the variable to set, if any.
    pub database_url: Option<String>,
    /// `--runtime-dir`.
    pub runtime_dir: Option<PathBuf>,
    /// Whether any reference is an AWS one.
    pub uses_aws: bool,
    /// Variables removed from the app's environment (besides every `LAUNCHER_*`).
    pub strip: Vec<&'static str>,
    /// `--min-ttl`.
    pub min_ttl: Option<Duration>,
    /// `--export-lease`.
    pub export_lease: bool,
    /// `--pristine`.
    pub pristine: bool,
    /// `--keep-env`: variables passed through even though they would be removed.
    pub keep: Vec<String>,
    /// `--wait`: how long to keep retrying an unreachable store or database.
    pub wait: Option<Duration>,
    /// `--expiry-warning` in days.
    pub expiry_warning_days: u32,
    /// `--driver`: the app's drivers, whose verdicts the check gives too (empty: warn for all).
    pub drivers: Vec<crate::drivers::Driver>,
    /// `--supervise`, with its settings.
    pub supervise: Option<Supervise>,
    /// The inherited environment.
    pub env: ParentEnv,
}

/// `--supervise`'s settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervise {
    /// `--on-change`.
    pub on_change: crate::cli::OnChange,
    /// `--stop-timeout`.
    pub stop_timeout: Duration,
    /// `--refresh`.
    pub refresh: Duration,
}

impl Supervise {
    /// The settings, checked against how the password reaches the app: a change applied in place
    /// must be able to reach it through a file.
    fn new(options: &Options) -> Result<Option<Self>, Error> {
        use crate::cli::OnChange;
        let on_change = options.on_change;
        if !options.supervise {
            if let Some(flag) = [
                on_change.map(|_| "--on-change"),
                options.stop_timeout.map(|_| "--stop-timeout"),
                options.refresh.map(|_| "--refresh"),
            ]
            .into_iter()
            .flatten()
            .next()
            {
                return Err(Error::msg(Exit::Usage, format!("{flag} goes with --supervise")));
            }
            return Ok(None);
        }
        let on_change = on_change.unwrap_or(OnChange::Restart);
        if matches!(on_change, OnChange::Passfile | OnChange::Signal(_))
            && options.password_via != Some(crate::cli::PasswordVia::Passfile)
        {
            return Err(Error::msg(
                Exit::Usage,
                format!(
                    "--on-change {}: needs --password-via passfile (a password in the app's environment cannot be \
                     changed without a restart)",
                    on_change.name()
                ),
            ));
        }
        if matches!(on_change, OnChange::Passfile | OnChange::Signal(_))
            && options.driver.contains(&crate::drivers::Driver::Pgx)
        {
            crate::log::warn(format!(
                "--on-change {}: pgx reads the .pgpass when its configuration is parsed, and a pool (pgxpool) parses \
                 once: its new connections keep the old password; --on-change restart reaches it",
                on_change.name()
            ));
        }
        let refresh = options.refresh.unwrap_or(Duration::from_mins(5));
        if refresh < Duration::from_secs(1) {
            return Err(Error::msg(Exit::Usage, "--refresh: at least 1s"));
        }
        Ok(Some(Self { on_change, stop_timeout: options.stop_timeout.unwrap_or(Duration::from_secs(10)), refresh }))
    }
}

fn reference(flag: &str, text: &str) -> Result<Reference, Error> {
    Reference::parse(text).map_err(|e| Error::msg(Exit::Usage, format!("--{flag}: {e}")))
}

impl Plan {
    /// Validates the options against the inherited environment.
    pub fn new(options: &Options, env: ParentEnv, home: Option<&Path>) -> Result<Self, Error> {
        let credentials = options.credentials.as_deref().map(|t| reference("credentials", t)).transpose()?;
        let libpq = Libpq::from_env(&env, home, options.connect_timeout)?;
        let ca = match (options.ca.as_deref(), &libpq.root) {
            (Some(text), _) => CaPlan::Fetch(reference("ca", text)?),
            (None, Some(root)) => CaPlan::Existing(root.clone()),
            (None, None) => {
                return Err(Error::msg(
                    Exit::Config,
                    "no CA bundle: pass --ca or set PGSSLROOTCERT (there is no home directory for ~/.postgresql/root.crt)",
                ));
            }
        };
        let client_cert = options.client_cert.as_deref().map(|t| reference("client-cert", t)).transpose()?;
        if let Some(r) = client_cert.as_ref().filter(|r| r.scheme() != launcher_core::Scheme::VaultPki) {
            return Err(Error::msg(Exit::Usage, format!("--client-cert: {r}: use vault-pki:MOUNT/issue/ROLE")));
        }
        // The app inherits PGSSLCERTMODE: its libpq would not present the certificate checked.
        if client_cert.is_some() && libpq.cert_mode == crate::libpq::CertMode::Disable {
            return Err(Error::msg(
                Exit::Config,
                "--client-cert: PGSSLCERTMODE=disable keeps the app's libpq from presenting it: unset PGSSLCERTMODE",
            ));
        }
        let uses = |scheme| {
            credentials
                .iter()
                .chain(client_cert.iter())
                .chain(match &ca {
                    CaPlan::Fetch(r) => Some(r),
                    CaPlan::Existing(_) => None,
                })
                .any(|r| r.scheme() == scheme)
        };
        let uses_vault = uses(launcher_core::Scheme::Vault) || uses(launcher_core::Scheme::VaultPki);
        let uses_aws = uses(launcher_core::Scheme::AwsSm);
        // Bootstrap credentials the launcher used never reach the app, unless kept explicitly.
        // PGSERVICE too: libpq lets a service file's settings override the PG* variables, so an
        // inherited service could undo the host, the CA and sslmode=verify-full the launcher sets.
        let mut strip: Vec<&'static str> = vec!["VAULT_TOKEN", "BAO_TOKEN", "PGSERVICE"];
        if uses_aws && env.get("AWS_ACCESS_KEY_ID").is_some() {
            strip.extend(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]);
        }
        refuse_unsafe(options, &env, uses_vault)?;
        if let Some(driver) =
            options.driver.iter().find(|d| !d.takes_hostaddr()).filter(|_| libpq.hostaddrs.iter().any(Option::is_some))
        {
            return Err(Error::msg(
                Exit::Config,
                format!(
                    "PGHOSTADDR: {} ignores it and dials PGHOST, not the address the check would connect to: unset \
                     PGHOSTADDR, or give the address as PGHOST",
                    driver.name()
                ),
            ));
        }
        // tokio-postgres, which the rustls apps use, knows three of libpq's six values, and
        // refuses a URL with another.
        if options.driver.contains(&crate::drivers::Driver::Rustls)
            && matches!(libpq.session, SessionAttrs::Primary | SessionAttrs::Standby | SessionAttrs::PreferStandby)
        {
            return Err(Error::msg(
                Exit::Config,
                format!(
                    "PGTARGETSESSIONATTRS={}: rustls apps (tokio-postgres) know only any, read-write and read-only",
                    libpq.session.name()
                ),
            ));
        }
        if options.password_via == Some(crate::cli::PasswordVia::Passfile)
            && let Some(driver) = options.driver.iter().find(|d| !d.reads_passfile())
        {
            crate::log::warn(format!(
                "--password-via passfile: {} apps on tokio-postgres read no .pgpass and get no password (sqlx reads \
                 PGPASSFILE); use --password-via env for them",
                driver.name()
            ));
        }
        let vault = if uses_vault { Some(VaultPlan::new(options, &env)?) } else { None };
        Ok(Self {
            credentials,
            ca,
            client_cert,
            libpq,
            overrides: Overrides {
                host: options.host.clone(),
                port: options.port,
                dbname: options.dbname.clone(),
                user: options.user.clone(),
            },
            vault,
            wait: options.wait,
            password_via: options.password_via.unwrap_or(crate::cli::PasswordVia::Env),
            database_url: options.database_url.clone(),
            runtime_dir: options.runtime_dir.clone(),
            uses_aws,
            strip,
            keep: options.keep_env.clone(),
            pristine: options.pristine,
            min_ttl: options.min_ttl,
            export_lease: options.export_lease,
            expiry_warning_days: options.expiry_warning.unwrap_or(30),
            drivers: options.driver.clone(),
            supervise: Supervise::new(options)?,
            env,
        })
    }
}

/// Options that would leave the app weaker than the check, or mean nothing, refused before
/// anything is fetched; settings the launcher never honours, named.
fn refuse_unsafe(options: &Options, env: &ParentEnv, uses_vault: bool) -> Result<(), Error> {
    if options.keep_env.iter().any(|k| k == "PGSERVICE") {
        return Err(Error::msg(
            Exit::Usage,
            "--keep-env PGSERVICE: refused: libpq lets a service file's settings override the PG* variables the \
             launcher sets and checks (host, CA, sslmode=verify-full), so the app could connect more weakly than \
             the check did",
        ));
    }
    if options.port == Some(0) {
        return Err(Error::msg(Exit::Usage, "--port: 0 is not a port number (1-65535)"));
    }
    if let Some(var) = options.database_url.as_deref().filter(|v| !is_variable_name(v)) {
        return Err(Error::msg(
            Exit::Usage,
            format!("--database-url: \"{var}\" is not an environment variable name (letters, digits, _)"),
        ));
    }
    for var in ["VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"] {
        if uses_vault && env.get(var).is_some() {
            crate::log::warn(format!(
                "{var} is ignored: the launcher always verifies Vault's certificate (give its CA with --vault-cacert)"
            ));
        }
    }
    Ok(())
}

/// `[A-Za-z_][A-Za-z0-9_]*`: a name every shell, dotenv reader and exec environment takes.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The Vault login method and what it needs; a missing piece is a usage error naming the flag.
#[cfg(feature = "vault")]
fn vault_auth(o: &Options) -> Result<launcher_vault::Auth, Error> {
    use crate::cli::VaultAuth;
    use launcher_vault::Auth;
    let need = |value: Option<PathBuf>, flag: &str, method: &str| {
        value.ok_or_else(|| Error::msg(Exit::Usage, format!("--vault-auth {method} needs {flag}")))
    };
    let role = |method: &str| {
        o.vault_role.clone().ok_or_else(|| Error::msg(Exit::Usage, format!("--vault-auth {method} needs --vault-role")))
    };
    let mount = |default: &str| o.vault_auth_mount.clone().unwrap_or_else(|| default.to_owned());
    Ok(match o.vault_auth.unwrap_or(VaultAuth::Token) {
        VaultAuth::Token => Auth::Token,
        VaultAuth::Approle => Auth::AppRole {
            mount: mount("approle"),
            role_id_file: need(o.vault_role_id_file.clone(), "--vault-role-id-file", "approle")?,
            secret_id_file: need(o.vault_secret_id_file.clone(), "--vault-secret-id-file", "approle")?,
            wrapped: o.vault_secret_id_wrapped,
        },
        VaultAuth::Jwt => Auth::Jwt {
            mount: mount("jwt"),
            role: role("jwt")?,
            jwt_file: need(o.vault_jwt_file.clone(), "--vault-jwt-file", "jwt")?,
        },
        VaultAuth::Kubernetes => Auth::Kubernetes {
            mount: mount("kubernetes"),
            role: role("kubernetes")?,
            jwt_file: o.vault_jwt_file.clone().unwrap_or_else(|| PathBuf::from(launcher_vault::KUBERNETES_JWT)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opts() -> Options {
        crate::cli::Cli::parse_from(["launcher", "--", "true"]).options
    }

    #[test]
    fn options_that_would_weaken_the_app_or_mean_nothing_are_refused() {
        let refused = |args: &[&str]| {
            let options = crate::cli::Cli::parse_from(args).options;
            Plan::new(&options, ParentEnv::default(), Some(Path::new("/h"))).unwrap_err()
        };
        let e = refused(&["launcher", "--keep-env", "APP,PGSERVICE", "--", "true"]);
        assert_eq!(e.exit(), Exit::Usage);
        assert!(e.to_string().starts_with("--keep-env PGSERVICE: refused"), "{e}");
        let e = refused(&["launcher", "--database-url=A=B", "--", "true"]);
        assert!(e.to_string().contains("\"A=B\" is not an environment variable name"), "{e}");
        let options = Options { port: Some(0), ..opts() };
        let e = Plan::new(&options, ParentEnv::default(), Some(Path::new("/h"))).unwrap_err();
        assert_eq!((e.exit(), e.to_string().as_str()), (Exit::Usage, "--port: 0 is not a port number (1-65535)"));
        assert!(is_variable_name("_DB_URL2") && !is_variable_name("2X") && !is_variable_name(""));
        // The app's libpq would not present the certificate the check presented.
        let options =
            crate::cli::Cli::parse_from(["launcher", "--client-cert", "vault-pki:pki/issue/app", "--", "true"]);
        let env = ParentEnv::from_pairs([("PGSSLCERTMODE", "disable")]);
        let e = Plan::new(&options.options, env, Some(Path::new("/h"))).unwrap_err();
        assert_eq!(e.exit(), Exit::Config);
        assert!(e.to_string().starts_with("--client-cert: PGSSLCERTMODE=disable keeps the app's libpq"), "{e}");
        let env = ParentEnv::from_pairs([("PGSSLCERTMODE", "require")]);
        assert!(Plan::new(&options.options, env, Some(Path::new("/h"))).is_ok());
    }

    #[test]
    fn durations() {
        use crate::cli::parse_duration;
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn ca_falls_back_like_libpq() {
        let env = ParentEnv::from_pairs([("PGSSLROOTCERT", "/etc/ca.pem")]);
        let p = Plan::new(&opts(), env, Some(Path::new("/home/u"))).unwrap();
        assert_eq!(p.ca, CaPlan::Existing("/etc/ca.pem".into()));
        let p = Plan::new(&opts(), ParentEnv::default(), Some(Path::new("/home/u"))).unwrap();
        assert_eq!(p.ca, CaPlan::Existing("/home/u/.postgresql/root.crt".into()));
        assert_eq!(p.libpq.crl.file, Some("/home/u/.postgresql/root.crl".into()));
        let o = Options { ca: Some("vault:secret/x#ca".into()), credentials: Some("vault:secret/x".into()), ..opts() };
        let env = ParentEnv::from_pairs([("VAULT_ADDR", "http://127.0.0.1:1")]);
        let p = Plan::new(&o, env, None).unwrap();
        assert!(matches!(p.ca, CaPlan::Fetch(_)));
        assert_eq!(p.vault.unwrap().address, "http://127.0.0.1:1");
    }

    #[test]
    fn refuses_plain_http_vault_off_loopback_and_bad_references() {
        let o = Options { credentials: Some("vault:secret/x".into()), ..opts() };
        let env = ParentEnv::from_pairs([("VAULT_ADDR", "http://10.1.2.3:8200")]);
        let e = Plan::new(&o, env, Some(Path::new("/h"))).unwrap_err();
        assert_eq!(e.exit(), Exit::Config);
        assert!(e.to_string().contains("not a loopback address"), "{e}");
        let o = Options { credentials: Some("secret/x".into()), ..opts() };
        let e = Plan::new(&o, ParentEnv::default(), Some(Path::new("/h"))).unwrap_err();
        assert_eq!(e.exit(), Exit::Usage);
        assert!(e.to_string().starts_with("--credentials: "), "{e}");
    }
}
