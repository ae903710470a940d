//! What the user typed: clap definitions with their environment-variable fallbacks. No I/O and
//! no validation beyond syntax happens here; `plan` turns this into something runnable.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The text after `--help`'s options: examples, then the exit codes from [`Exit::ALL`].
fn after_help() -> String {
    format!(
        "Examples:
  launcher --credentials vault:secret/app/db --ca vault:secret/app/db#ca_pem -- ./app --flag
  launcher check --credentials vault:secret/app/db --ca file:/etc/ssl/db-ca.pem
  launcher env --credentials vault:secret/app/db --ca vault:secret/app/db#ca_pem --format shell

References are SOURCE:PATH[#FIELD]: vault:secret/app/db, vault:secret/app/db#ca_pem, file:/run/ca.pem.
{}",
        crate::error::Exit::help()
    )
}

/// Fetch PostgreSQL credentials and CA from a secret store, verify the TLS connection the way
/// libpq's sslmode=verify-full would, then exec the app with the libpq environment.
#[derive(Debug, Parser)]
#[command(
    name = "launcher",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    args_override_self = true,
    after_help = after_help()
)]
pub struct Cli {
    /// `check` or `env`; without one, the launcher runs PROGRAM.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where secrets come from and where the database is.
    #[command(flatten)]
    pub options: Options,

    /// The program to exec, and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub program: Vec<OsString>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Do everything but the exec: fetch, verify the connection, print a report.
    #[command(args_override_self = true)]
    Check {
        /// Sources and connection settings.
        #[command(flatten)]
        options: Options,
        /// Report format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `launcher man > /usr/local/share/man/man1/launcher.1`.
    Man,
    /// Print the environment the app would get (the password redacted unless --reveal).
    #[command(args_override_self = true)]
    Env {
        /// Sources and connection settings.
        #[command(flatten)]
        options: Options,
        /// Output format.
        #[arg(long, value_enum, default_value_t = EnvFormat::Shell)]
        format: EnvFormat,
        /// Print the password instead of `<redacted>`.
        #[arg(long)]
        reveal: bool,
    },
}

/// Vault login methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultAuth {
    /// A token.
    Token,
    /// Role id + secret id.
    Approle,
    /// A JWT verified by Vault's JWT auth.
    Jwt,
    /// The pod's service-account token.
    Kubernetes,
}

/// How the password reaches the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordVia {
    /// `PGPASSWORD` (what the seed article does).
    Env,
    /// A 0600 `.pgpass` file in the runtime directory, named by `PGPASSFILE` (what libpq recommends).
    Passfile,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `launcher: …`
    Human,
    /// `{"level":"info","message":"…"}`
    Json,
}

/// How `launcher check` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned lines for people.
    Human,
    /// One JSON object.
    Json,
}

/// How `launcher env` prints variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvFormat {
    /// `export NAME='value'`, for `eval` in a POSIX shell.
    Shell,
    /// `NAME="value"`, for .env files.
    Dotenv,
    /// One JSON object.
    Json,
}

/// Options shared by every mode. Each has a `LAUNCHER_*` environment variable, removed from the
/// app's environment.
// Each bool is an independent on/off flag the user types; an enum would not read better.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Default, Args, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// A TOML file with any of these options under their long names (`vault-addr = "…"`);
    /// flags and their environment variables win over it.
    #[arg(long, env = "LAUNCHER_CONFIG", value_name = "PATH")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Database credentials: a reference to a secret with username/user, password and optionally
    /// host, port, dbname/database fields.
    #[arg(long, env = "LAUNCHER_CREDENTIALS", value_name = "REF")]
    pub credentials: Option<String>,

    /// The CA bundle that signed the server certificate, as a reference (e.g. vault:PATH#FIELD,
    /// file:PATH). Without it, PGSSLROOTCERT or ~/.postgresql/root.crt is used, as libpq does.
    #[arg(long, env = "LAUNCHER_CA", value_name = "REF")]
    pub ca: Option<String>,

    /// A client certificate for mutual TLS, issued at start-up for the database user as its CN:
    /// vault-pki:MOUNT/issue/ROLE. The app gets PGSSLCERT and PGSSLKEY (0600).
    #[arg(long, env = "LAUNCHER_CLIENT_CERT", value_name = "REF")]
    pub client_cert: Option<String>,

    /// Database host name (overrides the secret's `host`, which overrides PGHOST).
    #[arg(long, env = "LAUNCHER_HOST")]
    pub host: Option<String>,

    /// Database port (overrides the secret's `port`, which overrides PGPORT).
    #[arg(long, env = "LAUNCHER_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Database name (overrides the secret's `dbname`, which overrides PGDATABASE).
    #[arg(long, env = "LAUNCHER_DBNAME")]
    pub dbname: Option<String>,

    /// Database user (overrides the secret's `username`, which overrides PGUSER).
    #[arg(long, env = "LAUNCHER_USER")]
    pub user: Option<String>,

    /// Vault address; else VAULT_ADDR, BAO_ADDR, https://127.0.0.1:8200.
    #[arg(long, env = "LAUNCHER_VAULT_ADDR", value_name = "URL")]
    pub vault_addr: Option<String>,

    /// A file holding the Vault token; else VAULT_TOKEN, BAO_TOKEN, ~/.vault-token.
    #[arg(long, env = "LAUNCHER_VAULT_TOKEN_FILE", value_name = "PATH")]
    pub vault_token_file: Option<PathBuf>,

    /// CA bundle for an https:// Vault; else VAULT_CACERT, BAO_CACERT; system roots are trusted too.
    #[arg(long, env = "LAUNCHER_VAULT_CACERT", value_name = "PATH")]
    pub vault_cacert: Option<PathBuf>,

    /// How to log in to Vault: token (VAULT_TOKEN, --vault-token-file, ~/.vault-token), approle,
    /// jwt or kubernetes.
    #[arg(long, env = "LAUNCHER_VAULT_AUTH", value_enum, value_name = "METHOD")]
    pub vault_auth: Option<VaultAuth>,

    /// The auth method's mount path (default: approle, jwt or kubernetes).
    #[arg(long, env = "LAUNCHER_VAULT_AUTH_MOUNT", value_name = "PATH")]
    pub vault_auth_mount: Option<String>,

    /// AppRole: a file holding the role id (e.g. $CREDENTIALS_DIRECTORY/role-id).
    #[arg(long, env = "LAUNCHER_VAULT_ROLE_ID_FILE", value_name = "PATH")]
    pub vault_role_id_file: Option<PathBuf>,

    /// AppRole: a file holding the secret id.
    #[arg(long, env = "LAUNCHER_VAULT_SECRET_ID_FILE", value_name = "PATH")]
    pub vault_secret_id_file: Option<PathBuf>,

    /// AppRole: the secret-id file holds a response-wrapping token; unwrap it (once) after
    /// checking that an AppRole secret-id endpoint made it.
    #[arg(long, env = "LAUNCHER_VAULT_SECRET_ID_WRAPPED", value_parser = BoolishValueParser::new())]
    pub vault_secret_id_wrapped: bool,

    /// JWT and Kubernetes auth: the Vault role to log in as.
    #[arg(long, env = "LAUNCHER_VAULT_ROLE", value_name = "NAME")]
    pub vault_role: Option<String>,

    /// JWT and Kubernetes auth: the JWT file (Kubernetes default: the pod's service-account token).
    #[arg(long, env = "LAUNCHER_VAULT_JWT_FILE", value_name = "PATH")]
    pub vault_jwt_file: Option<PathBuf>,

    /// Seconds to wait for the database connection; else PGCONNECT_TIMEOUT, else 10.
    #[arg(long, env = "LAUNCHER_CONNECT_TIMEOUT", value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,

    /// Retry while the secret store or the database is unreachable or starting up, with
    /// jittered exponential back-off, for at most this long (e.g. 30s, 2m). Refused
    /// certificates and failed authentication are never retried. Default: no waiting.
    #[arg(long, env = "LAUNCHER_WAIT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "duration")]
    pub wait: Option<Duration>,

    /// Warn when a certificate in the server's chain expires within this many days [default: 30].
    #[arg(long, env = "LAUNCHER_EXPIRY_WARNING", value_name = "DAYS")]
    pub expiry_warning: Option<u32>,

    /// How the app gets the password: `env` (PGPASSWORD) or `passfile` (a 0600 .pgpass file in
    /// the runtime directory, named by PGPASSFILE; no PGPASSWORD at all).
    #[arg(long, env = "LAUNCHER_PASSWORD_VIA", value_enum, value_name = "HOW")]
    pub password_via: Option<PasswordVia>,

    /// Also give the app a connection URL in VAR (default DATABASE_URL):
    /// postgresql://user:password@host:port/db?sslmode=verify-full&sslrootcert=…, every part
    /// percent-encoded. With --password-via passfile the URL carries no password.
    #[arg(long, env = "LAUNCHER_DATABASE_URL", value_name = "VAR", num_args = 0..=1, default_missing_value = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where to create the private directory for the files libpq reads (default:
    /// $RUNTIME_DIRECTORY, $XDG_RUNTIME_DIR, /dev/shm, the temp dir).
    #[arg(long, env = "LAUNCHER_RUNTIME_DIR", value_name = "PATH")]
    pub runtime_dir: Option<PathBuf>,

    /// Start the app's environment from nothing but what the launcher sets, PATH, HOME, USER,
    /// LANG, LC_*, TZ, TERM, TMPDIR, systemd's NOTIFY_SOCKET/LISTEN_*/…_DIRECTORY variables and
    /// --keep-env names.
    #[arg(long, env = "LAUNCHER_PRISTINE", value_parser = BoolishValueParser::new())]
    pub pristine: bool,

    /// Refuse to launch when dynamic credentials expire sooner than this (the earlier of the
    /// lease's and the Vault token's expiry), e.g. 1h.
    #[arg(long, env = "LAUNCHER_MIN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "duration")]
    pub min_ttl: Option<Duration>,

    /// Tell the app about the credentials' lease: DB_CREDENTIALS_LEASE_ID and
    /// DB_CREDENTIALS_EXPIRES_AT (RFC 3339, UTC), so that it or its supervisor can restart in time.
    #[arg(long, env = "LAUNCHER_EXPORT_LEASE", value_parser = BoolishValueParser::new())]
    pub export_lease: bool,

    /// Pass this inherited variable to the app even though the launcher would remove it
    /// (VAULT_TOKEN, BAO_TOKEN, static AWS keys it used, LAUNCHER_*). Repeatable.
    #[arg(long, env = "LAUNCHER_KEEP_ENV", value_name = "NAME", value_delimiter = ',')]
    pub keep_env: Vec<String>,

    /// The app's PostgreSQL driver: the check refuses (76) what it would refuse, in its words, and
    /// the app gets what the driver reads. libpq (the default: psql, psycopg, ruby-pg), pgx (Go),
    /// pgjdbc (Java: JDBC_DATABASE_URL…) or node-postgres (NODE_EXTRA_CA_CERTS). Repeatable, for
    /// an app with two. Without it, a warning names the drivers that would refuse the server's
    /// certificate.
    #[arg(long, env = "LAUNCHER_DRIVER", value_enum, value_name = "NAME", value_delimiter = ',')]
    pub driver: Vec<crate::drivers::Driver>,

    /// Stay as the app's parent instead of exec'ing it: forward signals, reap zombies, exit with
    /// the app's status; renew the lease and the Vault token at about 2/3 of their TTL; when the
    /// credentials change or can no longer be extended, fetch and check the new ones, then apply
    /// --on-change. See "Supervising" in the README.
    #[arg(long, env = "LAUNCHER_SUPERVISE", value_parser = BoolishValueParser::new())]
    pub supervise: bool,

    /// With --supervise, what a change of credentials does: `restart` (the default: SIGTERM,
    /// --stop-timeout, SIGKILL, start again), `passfile` (rewrite the .pgpass in place; needs
    /// --password-via passfile and the same user), `signal:NAME` (rewrite the files in place and
    /// send NAME) or `exit` (stop the app and exit 75, for an orchestrator to restart).
    #[arg(long, env = "LAUNCHER_ON_CHANGE", value_name = "ACTION", value_parser = OnChange::parse)]
    #[serde(with = "on_change")]
    pub on_change: Option<OnChange>,

    /// With --supervise, how long the app has to exit after SIGTERM before SIGKILL [default: 10s].
    #[arg(long, env = "LAUNCHER_STOP_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "duration")]
    pub stop_timeout: Option<Duration>,

    /// With --supervise, how often secrets without a lease (KV, static roles, AWS, files) are
    /// read again to notice a change [default: 5m]; a static role is also read again when Vault
    /// says it rotates.
    #[arg(long, env = "LAUNCHER_REFRESH", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "duration")]
    pub refresh: Option<Duration>,

    /// Log lines as `human` text or one JSON object per line.
    #[arg(long, env = "LAUNCHER_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Also log details: timings, where each value came from.
    #[arg(long, short, env = "LAUNCHER_VERBOSE", value_parser = BoolishValueParser::new())]
    pub verbose: bool,

    /// Only warnings and errors on stderr.
    #[arg(long, short, env = "LAUNCHER_QUIET", value_parser = BoolishValueParser::new())]
    pub quiet: bool,
}

/// What `--supervise` does when the credentials change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Stop the app and start it again with the new environment.
    Restart,
    /// Rewrite the `.pgpass` (and the other files) in place; libpq reads it at each new connection.
    Passfile,
    /// Rewrite the files in place and send the app this signal.
    Signal(nix::sys::signal::Signal),
    /// Stop the app and exit 75.
    Exit,
}

impl OnChange {
    /// `restart`, `passfile`, `exit` or `signal:NAME` (`signal:HUP`, `signal:SIGUSR1`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "restart" => Ok(Self::Restart),
            "passfile" => Ok(Self::Passfile),
            "exit" => Ok(Self::Exit),
            _ => {
                let Some(name) = text.strip_prefix("signal:") else {
                    return Err(format!("\"{text}\": use restart, passfile, signal:NAME or exit"));
                };
                let upper = name.to_ascii_uppercase();
                let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
                full.parse::<nix::sys::signal::Signal>()
                    .ok()
                    .filter(|s| !matches!(s, nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGSTOP))
                    .map(Self::Signal)
                    .ok_or_else(|| format!("\"{name}\" is not a signal the app can catch (e.g. HUP, USR1)"))
            }
        }
    }

    /// The text [`OnChange::parse`] reads back.
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Self::Restart => "restart".into(),
            Self::Passfile => "passfile".into(),
            Self::Exit => "exit".into(),
            Self::Signal(s) => format!("signal:{}", s.as_str().trim_start_matches("SIG")),
        }
    }
}

/// `--on-change` in the configuration file, written as on the command line.
mod on_change {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::OnChange;

    // serde's `with` hands the field by reference: `&Option<_>` is its signature, not a choice.
    #[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)]
    pub(super) fn serialize<S: Serializer>(value: &Option<OnChange>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&v.name()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OnChange>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => OnChange::parse(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// `30s`, `2m`, `1h`, `500ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("\"{text}\" is not a duration like 30s, 2m or 500ms"))?;
    let millis = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("\"{text}\": unknown unit \"{unit}\" (use ms, s, m or h)")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| format!("\"{text}\" is too long"))
}

/// Durations in the configuration file, written as on the command line (`"30s"`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    // serde's `with` hands the field by reference: `&Option<_>` is its signature, not a choice.
    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::parse_duration(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
