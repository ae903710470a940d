//! Flags + the inherited environment → a validated [`Plan`]. Pure: it reads no file and opens
//! no connection, so every rule here is testable on its own.

use std::ffi::{OsStr, OsString};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use launcher_core::Reference;

use crate::cli::Options;
use crate::error::{Error, Exit};

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

/// Certificate revocation lists, as libpq finds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlPlan {
    /// `PGSSLCRL`, else `~/.postgresql/root.crl`.
    pub file: Option<PathBuf>,
    /// `PGSSLCRLDIR`.
    pub dir: Option<PathBuf>,
}

/// The client certificate libpq presents on its own when it exists: `PGSSLCERT`, else
/// `~/.postgresql/postgresql.crt`, with `PGSSLKEY`, else `~/.postgresql/postgresql.key`.
#[derive(Debug, Clone, Default)]
pub struct LibpqClientPlan {
    /// The certificate file.
    pub cert: Option<PathBuf>,
    /// Its key file.
    pub key: Option<PathBuf>,
}

/// The TLS versions libpq allows: `PGSSLMINPROTOCOLVERSION` (default TLSv1.2) to
/// `PGSSLMAXPROTOCOLVERSION` (default: OpenSSL's newest). The check's OpenSSL is set to the same
/// range, and the system's openssl.cnf may narrow it further, for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsRange {
    /// The oldest version.
    pub min: openssl::ssl::SslVersion,
    /// The newest, when limited.
    pub max: Option<openssl::ssl::SslVersion>,
}

impl TlsRange {
    fn from_env(env: &ParentEnv) -> Result<Self, Error> {
        use openssl::ssl::SslVersion;
        // libpq's names, in order; an empty value is unset.
        const NAMES: [(&str, SslVersion); 4] = [
            ("TLSv1", SslVersion::TLS1),
            ("TLSv1.1", SslVersion::TLS1_1),
            ("TLSv1.2", SslVersion::TLS1_2),
            ("TLSv1.3", SslVersion::TLS1_3),
        ];
        let read = |var: &str, setting: &str| match env.get(var) {
            None => Ok(None),
            Some(v) => NAMES
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(v))
                .map(Some)
                .ok_or_else(|| Error::msg(Exit::Config, format!("{var}: invalid {setting} value: \"{v}\""))),
        };
        let min = read("PGSSLMINPROTOCOLVERSION", "ssl_min_protocol_version")?.unwrap_or(2);
        let max = read("PGSSLMAXPROTOCOLVERSION", "ssl_max_protocol_version")?;
        if max.is_some_and(|max| min > max) {
            return Err(Error::msg(
                Exit::Config,
                "PGSSLMINPROTOCOLVERSION/PGSSLMAXPROTOCOLVERSION: invalid SSL protocol version range",
            ));
        }
        Ok(Self { min: NAMES[min].1, max: max.map(|i| NAMES[i].1) })
    }
}

/// libpq's `channel_binding` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBindingMode {
    /// Never SCRAM-SHA-256-PLUS.
    Disable,
    /// SCRAM-SHA-256-PLUS when the server offers it (libpq's default).
    #[default]
    Prefer,
    /// Only SCRAM-SHA-256-PLUS.
    Require,
}

/// libpq's `target_session_attrs`, for the one host the launcher allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionAttrs {
    /// `any`, and `prefer-standby` (which, with one host, settles for any session).
    #[default]
    Any,
    /// `read-write`: the session must not be read-only.
    ReadWrite,
    /// `read-only`: the session must be read-only.
    ReadOnly,
    /// `primary` or `standby`: judged from the server's `in_hot_standby`, which the check
    /// cannot read; the app's libpq still enforces it.
    Unchecked,
}

/// How the app's libpq will connect, from its environment: the check connects alike. Read
/// before anything is fetched, so that a bad value costs no secret.
#[derive(Debug, Clone)]
pub struct LibpqSettings {
    /// `PGSSLMINPROTOCOLVERSION`/`PGSSLMAXPROTOCOLVERSION`.
    pub tls: TlsRange,
    /// `PGCHANNELBINDING`.
    pub channel_binding: ChannelBindingMode,
    /// `PGTARGETSESSIONATTRS`, as far as the check can judge it.
    pub session: SessionAttrs,
    /// The server settings libpq sends at start-up, as one `options` string for the check: the
    /// `PGOPTIONS` given, then `PGDATESTYLE`, `PGTZ`, `PGGEQO` and `PGCLIENTENCODING` (a bad
    /// value is FATAL for libpq's connection, and so for the check's).
    pub options: Option<String>,
    /// `PGSSLSNI`: whether the host name goes out as SNI. libpq sends it only when the value
    /// starts with `1` (its default), so `0`, `true` and an empty value all turn it off.
    pub sni: bool,
    /// Variables set for the app that libpq 16 or 17 reads and the check does not judge (the
    /// libpq here, 15, cannot tell what those versions conclude): each gets a warning.
    pub unjudged: Vec<&'static str>,
}

/// `PGOPTIONS`, and the settings libpq sends at start-up from its other variables, as
/// `-c name=value` options (a backslash escapes spaces and backslashes there). libpq sends
/// `PGDATESTYLE`, `PGTZ` and `PGGEQO` whenever set, even empty, unless "default"; and
/// `PGCLIENTENCODING` unless empty or "auto" (which names the locale's encoding: always valid).
fn server_options(env: &ParentEnv) -> Option<String> {
    let mut options: Vec<String> = env.get("PGOPTIONS").map(str::to_owned).into_iter().collect();
    let escape = |v: &str| v.replace('\\', "\\\\").replace(' ', "\\ ");
    for (var, name) in [("PGDATESTYLE", "datestyle"), ("PGTZ", "timezone"), ("PGGEQO", "geqo")] {
        if let Some(value) = env.raw(var).filter(|v| !v.eq_ignore_ascii_case("default")) {
            options.push(format!("-c {name}={}", escape(value)));
        }
    }
    if let Some(encoding) = env.raw("PGCLIENTENCODING").filter(|v| !v.is_empty() && *v != "auto") {
        options.push(format!("-c client_encoding={}", escape(encoding)));
    }
    (!options.is_empty()).then(|| options.join(" "))
}

/// libpq 16/17 settings the check leaves to the app's libpq, with the version that reads them.
const UNJUDGED: [(&str, &str); 3] = [("PGREQUIREAUTH", "16"), ("PGSSLCERTMODE", "16"), ("PGSSLNEGOTIATION", "17")];

impl LibpqSettings {
    /// The warning for each variable in `unjudged`.
    #[must_use]
    pub fn unjudged_warnings(&self) -> Vec<String> {
        UNJUDGED
            .iter()
            .filter(|(var, _)| self.unjudged.contains(var))
            .map(|(var, version)| {
                format!("{var} is not judged by the check (libpq {version} and later read it); the app's libpq still applies it")
            })
            .collect()
    }

    fn from_env(env: &ParentEnv) -> Result<Self, Error> {
        let channel_binding = match env.raw("PGCHANNELBINDING") {
            None | Some("prefer") => ChannelBindingMode::Prefer,
            Some("require") => ChannelBindingMode::Require,
            Some("disable") => ChannelBindingMode::Disable,
            Some(other) => {
                return Err(Error::msg(
                    Exit::Config,
                    format!("PGCHANNELBINDING: invalid channel_binding value: \"{other}\""),
                ));
            }
        };
        let session = match env.raw("PGTARGETSESSIONATTRS") {
            None | Some("any" | "prefer-standby") => SessionAttrs::Any,
            Some("read-write") => SessionAttrs::ReadWrite,
            Some("read-only") => SessionAttrs::ReadOnly,
            Some("primary" | "standby") => SessionAttrs::Unchecked,
            Some(other) => {
                return Err(Error::msg(
                    Exit::Config,
                    format!("PGTARGETSESSIONATTRS: invalid target_session_attrs value: \"{other}\""),
                ));
            }
        };
        let options = server_options(env);
        let sni = env.raw("PGSSLSNI").is_none_or(|v| v.starts_with('1'));
        let unjudged = UNJUDGED.iter().map(|(var, _)| *var).filter(|var| env.raw(var).is_some()).collect();
        Ok(Self { tls: TlsRange::from_env(env)?, channel_binding, session, options, sni, unjudged })
    }
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
    /// Revocation lists for the check.
    pub crl: CrlPlan,
    /// The client certificate files libpq would find, used when `--client-cert` is not given.
    pub libpq_client: LibpqClientPlan,
    /// How the app's libpq will connect, from its environment.
    pub libpq: LibpqSettings,
    /// Explicit connection settings.
    pub overrides: Overrides,
    /// `PGHOSTADDR`: where to connect, while the name checked stays the host's.
    pub hostaddr: Option<IpAddr>,
    /// Present when any reference is a Vault one.
    pub vault: Option<VaultPlan>,
    /// The database connection time limit.
    pub connect_timeout: Duration,
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
    /// The inherited environment.
    pub env: ParentEnv,
}

fn reference(flag: &str, text: &str) -> Result<Reference, Error> {
    Reference::parse(text).map_err(|e| Error::msg(Exit::Usage, format!("--{flag}: {e}")))
}

impl Plan {
    /// Validates the options against the inherited environment.
    pub fn new(options: &Options, env: ParentEnv, home: Option<&Path>) -> Result<Self, Error> {
        let credentials = options.credentials.as_deref().map(|t| reference("credentials", t)).transpose()?;
        let ca = match options.ca.as_deref() {
            Some(text) => CaPlan::Fetch(reference("ca", text)?),
            None => match env.get("PGSSLROOTCERT") {
                Some(path) => CaPlan::Existing(PathBuf::from(path)),
                None => match home {
                    Some(home) => CaPlan::Existing(home.join(".postgresql/root.crt")),
                    None => {
                        return Err(Error::msg(
                            Exit::Config,
                            "no CA bundle: pass --ca or set PGSSLROOTCERT (there is no home directory for ~/.postgresql/root.crt)",
                        ));
                    }
                },
            },
        };
        let client_cert = options.client_cert.as_deref().map(|t| reference("client-cert", t)).transpose()?;
        if let Some(r) = client_cert.as_ref().filter(|r| r.scheme() != launcher_core::Scheme::VaultPki) {
            return Err(Error::msg(Exit::Usage, format!("--client-cert: {r}: use vault-pki:MOUNT/issue/ROLE")));
        }
        let crl = CrlPlan {
            file: env.get("PGSSLCRL").map(PathBuf::from).or_else(|| {
                (env.get("PGSSLCRLDIR").is_none()).then(|| home.map(|h| h.join(".postgresql/root.crl"))).flatten()
            }),
            dir: env.get("PGSSLCRLDIR").map(PathBuf::from),
        };
        // libpq treats an empty PGSSLCERT/PGSSLKEY as unset (as `get` does).
        let file_or = |name, default| env.get(name).map(PathBuf::from).or_else(|| home.map(|h| h.join(default)));
        let libpq_client = LibpqClientPlan {
            cert: file_or("PGSSLCERT", ".postgresql/postgresql.crt"),
            key: file_or("PGSSLKEY", ".postgresql/postgresql.key"),
        };
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
        let vault = if uses_vault { Some(VaultPlan::new(options, &env)?) } else { None };
        let hostaddr = match env.get("PGHOSTADDR") {
            None => None,
            Some(text) => Some(text.parse::<IpAddr>().map_err(|_| {
                Error::msg(Exit::Config, format!("PGHOSTADDR: \"{text}\" is not a numeric IP address"))
            })?),
        };
        // libpq: zero or negative means "wait forever"; a check must end, so those fall back to
        // the default, and libpq's 2-second minimum applies. Anything but an integer (an empty
        // value too) is an error there, and so here, even with --connect-timeout: the app
        // inherits the variable.
        let env_timeout = match env.raw("PGCONNECT_TIMEOUT") {
            None => None,
            Some(t) => match t.trim().parse::<i32>() {
                Ok(s) => u32::try_from(s).ok().filter(|s| *s > 0).map(|s| u64::from(s).max(2)),
                Err(_) => {
                    return Err(Error::msg(
                        Exit::Config,
                        format!(
                            "PGCONNECT_TIMEOUT: invalid integer value \"{t}\" for connection option \"connect_timeout\""
                        ),
                    ));
                }
            },
        };
        let connect_timeout = options.connect_timeout.or(env_timeout).unwrap_or(10);
        Ok(Self {
            credentials,
            ca,
            client_cert,
            crl,
            libpq_client,
            libpq: LibpqSettings::from_env(&env)?,
            overrides: Overrides {
                host: options.host.clone(),
                port: options.port,
                dbname: options.dbname.clone(),
                user: options.user.clone(),
            },
            hostaddr,
            vault,
            connect_timeout: Duration::from_secs(connect_timeout),
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

    /// A plan from `pairs` as the inherited environment, home /home/u.
    fn plan(pairs: &[(&str, &str)]) -> Result<Plan, Error> {
        Plan::new(&opts(), ParentEnv::from_pairs(pairs.iter().copied()), Some(Path::new("/home/u")))
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
    fn tls_versions_bound_as_in_libpq() {
        use openssl::ssl::SslVersion;
        let range = |pairs: &[(&str, &str)]| TlsRange::from_env(&ParentEnv::from_pairs(pairs.iter().copied()));
        assert_eq!(range(&[]).unwrap(), TlsRange { min: SslVersion::TLS1_2, max: None });
        assert_eq!(
            range(&[("PGSSLMINPROTOCOLVERSION", "tlsv1.3")]).unwrap(),
            TlsRange { min: SslVersion::TLS1_3, max: None }
        );
        assert_eq!(
            range(&[("PGSSLMAXPROTOCOLVERSION", "TLSv1.2")]).unwrap(),
            TlsRange { min: SslVersion::TLS1_2, max: Some(SslVersion::TLS1_2) }
        );
        assert_eq!(
            range(&[("PGSSLMINPROTOCOLVERSION", "TLSv1"), ("PGSSLMAXPROTOCOLVERSION", "TLSv1.1")]).unwrap(),
            TlsRange { min: SslVersion::TLS1, max: Some(SslVersion::TLS1_1) }
        );
        let e = range(&[("PGSSLMINPROTOCOLVERSION", "TLSv1.3"), ("PGSSLMAXPROTOCOLVERSION", "TLSv1.2")]).unwrap_err();
        assert!(e.to_string().contains("invalid SSL protocol version range"), "{e}");
        let e = range(&[("PGSSLMINPROTOCOLVERSION", "SSLv3")]).unwrap_err();
        assert!(e.to_string().contains("invalid ssl_min_protocol_version value: \"SSLv3\""), "{e}");
    }

    #[test]
    fn libpq_settings_are_read_before_anything_is_fetched() {
        let p =
            plan(&[("PGCHANNELBINDING", "require"), ("PGTARGETSESSIONATTRS", "read-write"), ("PGOPTIONS", "-c x=1")])
                .unwrap();
        assert_eq!(p.libpq.channel_binding, ChannelBindingMode::Require);
        assert_eq!(p.libpq.session, SessionAttrs::ReadWrite);
        assert_eq!(p.libpq.options.as_deref(), Some("-c x=1"));
        let p = plan(&[("PGTARGETSESSIONATTRS", "prefer-standby"), ("PGOPTIONS", "")]).unwrap();
        assert_eq!(
            (p.libpq.channel_binding, p.libpq.session, p.libpq.options),
            (ChannelBindingMode::Prefer, SessionAttrs::Any, None)
        );
        assert_eq!(plan(&[("PGTARGETSESSIONATTRS", "standby")]).unwrap().libpq.session, SessionAttrs::Unchecked);
        let e = plan(&[("PGCHANNELBINDING", "maybe")]).unwrap_err();
        assert_eq!(e.exit(), Exit::Config);
        assert!(e.to_string().contains("invalid channel_binding value: \"maybe\""), "{e}");
        let e = plan(&[("PGTARGETSESSIONATTRS", "sometimes")]).unwrap_err();
        assert!(e.to_string().contains("invalid target_session_attrs value: \"sometimes\""), "{e}");
    }

    #[test]
    fn ca_falls_back_like_libpq() {
        let env = ParentEnv::from_pairs([("PGSSLROOTCERT", "/etc/ca.pem")]);
        let p = Plan::new(&opts(), env, Some(Path::new("/home/u"))).unwrap();
        assert_eq!(p.ca, CaPlan::Existing("/etc/ca.pem".into()));
        let p = Plan::new(&opts(), ParentEnv::default(), Some(Path::new("/home/u"))).unwrap();
        assert_eq!(p.ca, CaPlan::Existing("/home/u/.postgresql/root.crt".into()));
        assert_eq!(p.crl.file, Some("/home/u/.postgresql/root.crl".into()));
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

    #[test]
    fn connect_timeout_follows_pgconnect_timeout() {
        let env = ParentEnv::from_pairs([("PGCONNECT_TIMEOUT", "1")]);
        assert_eq!(Plan::new(&opts(), env, Some(Path::new("/h"))).unwrap().connect_timeout, Duration::from_secs(2));
        let env = ParentEnv::from_pairs([("PGCONNECT_TIMEOUT", "30")]);
        assert_eq!(Plan::new(&opts(), env, Some(Path::new("/h"))).unwrap().connect_timeout, Duration::from_secs(30));
        for forever in ["0", "-5"] {
            let env = ParentEnv::from_pairs([("PGCONNECT_TIMEOUT", forever)]);
            assert_eq!(
                Plan::new(&opts(), env, Some(Path::new("/h"))).unwrap().connect_timeout,
                Duration::from_secs(10)
            );
        }
        for junk in ["", "abc", "3x", "3000000000"] {
            let env = ParentEnv::from_pairs([("PGCONNECT_TIMEOUT", junk)]);
            let e = Plan::new(&opts(), env, Some(Path::new("/h"))).unwrap_err();
            assert_eq!(e.exit(), Exit::Config, "{junk:?}");
            assert!(e.to_string().contains(&format!("invalid integer value \"{junk}\"")), "{e}");
        }
    }

    #[test]
    fn start_up_settings_become_escaped_server_options() {
        let p = plan(&[
            ("PGOPTIONS", "-c work_mem=64MB"),
            ("PGTZ", "Europe/Paris"),
            ("PGDATESTYLE", r"ISO, D\MY"),
            ("PGGEQO", "Default"),
            ("PGCLIENTENCODING", "auto"),
        ])
        .unwrap();
        assert_eq!(
            p.libpq.options.as_deref(),
            Some(r"-c work_mem=64MB -c datestyle=ISO,\ D\\MY -c timezone=Europe/Paris")
        );
        let p = plan(&[("PGTZ", ""), ("PGCLIENTENCODING", "LATIN1"), ("PGDATESTYLE", "default")]).unwrap();
        assert_eq!(p.libpq.options.as_deref(), Some("-c timezone= -c client_encoding=LATIN1"));
        assert_eq!(plan(&[("PGCLIENTENCODING", "")]).unwrap().libpq.options, None);
    }

    #[test]
    fn empty_libpq_variables_count_where_libpq_counts_them() {
        let sni =
            |value: Option<&str>| plan(&value.map(|v| vec![("PGSSLSNI", v)]).unwrap_or_default()).unwrap().libpq.sni;
        assert_eq!(
            [None, Some("1"), Some("1x"), Some("0"), Some("true"), Some("")].map(sni),
            [true, true, true, false, false, false]
        );
        for var in ["PGCHANNELBINDING", "PGTARGETSESSIONATTRS"] {
            let e = plan(&[(var, "")]).unwrap_err();
            assert!(e.to_string().contains("value: \"\""), "{var}: {e}");
        }
        // An empty PGSSLMINPROTOCOLVERSION is libpq's default, as an unset one.
        assert!(plan(&[("PGSSLMINPROTOCOLVERSION", ""), ("PGOPTIONS", "")]).is_ok());
    }
}
