//! What the app's libpq will do with its environment, resolved once: the one home of libpq's
//! rules. `Libpq::from_env` reads every variable libpq reads that the check must honour or
//! judge (protocol range, channel binding, target session, start-up options, SNI, the root
//! file, CRLs, the client certificate files, `PGHOSTADDR`, `PGCONNECT_TIMEOUT`); [`client`]
//! loads the client certificate libpq would present, [`pgpass`] reads and writes `.pgpass` as
//! libpq does. Which variables the launcher overrides or withholds for the app is `env`'s
//! concern; docs/security.md lists them all.

pub mod client;
pub mod hosts;
pub mod pgpass;
pub mod protocol;
mod require_auth;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::{ClientPlan, client_files};
pub use require_auth::RequireAuth;

use crate::error::{Error, Exit};
use crate::plan::ParentEnv;

/// Certificate revocation lists, as libpq finds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlPlan {
    /// `PGSSLCRL`, else `~/.postgresql/root.crl`.
    pub file: Option<PathBuf>,
    /// `PGSSLCRLDIR`.
    pub dir: Option<PathBuf>,
    /// `PGSSLCRL` itself: a driver that reads no `PGSSLCRLDIR` (asyncpg) loads this...
    pub named: Option<PathBuf>,
    /// ...else `~/.postgresql/root.crl`, whatever `PGSSLCRLDIR` says.
    pub default: Option<PathBuf>,
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

/// libpq 16's `sslcertmode`: whether the client certificate goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertMode {
    /// Never: the certificate files are not even read.
    Disable,
    /// When the server asks and there is one (libpq's default, and 15's only behaviour).
    #[default]
    Allow,
    /// The server must ask for one, and get it, before it lets the client in.
    Require,
}

/// libpq's `target_session_attrs`: which server of the host list a session may stay on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionAttrs {
    /// `any`: the first server that accepts the connection.
    #[default]
    Any,
    /// `read-write`: the session must not be read-only.
    ReadWrite,
    /// `read-only`: the session must be read-only.
    ReadOnly,
    /// `primary`: the server must not be in hot standby.
    Primary,
    /// `standby`: the server must be in hot standby.
    Standby,
    /// `prefer-standby`: a standby if the list has one that accepts, else any server (libpq
    /// walks the list twice).
    PreferStandby,
}

impl SessionAttrs {
    /// libpq's name for it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }

    /// Why a server whose session is `read_only` and which is `in_hot_standby` does not fit,
    /// in libpq's words (fe-connect.c); `None` when it does.
    #[must_use]
    pub const fn refusal(self, read_only: bool, in_hot_standby: bool) -> Option<&'static str> {
        match self {
            Self::ReadWrite if read_only => Some("session is read-only"),
            Self::ReadOnly if !read_only => Some("session is not read-only"),
            Self::Primary if in_hot_standby => Some("server is in hot standby mode"),
            Self::Standby | Self::PreferStandby if !in_hot_standby => Some("server is not in hot standby mode"),
            Self::Any | Self::ReadWrite | Self::ReadOnly | Self::Primary | Self::Standby | Self::PreferStandby => None,
        }
    }
}

/// What the app's libpq will take from its environment, resolved once, before anything is
/// fetched (a bad value costs no secret); the check connects alike.
#[derive(Debug, Clone)]
pub struct Libpq {
    /// `PGSSLMINPROTOCOLVERSION`/`PGSSLMAXPROTOCOLVERSION`.
    pub tls: TlsRange,
    /// `PGCHANNELBINDING`.
    pub channel_binding: ChannelBindingMode,
    /// `PGTARGETSESSIONATTRS`.
    pub session: SessionAttrs,
    /// `PGLOADBALANCEHOSTS=random` (libpq 16): the app's libpq tries the host list in a random
    /// order, so the check connects to every server of it.
    pub load_balance: bool,
    /// The server settings libpq sends at start-up, as one `options` string for the check: the
    /// `PGOPTIONS` given, then `PGDATESTYLE`, `PGTZ`, `PGGEQO` and `PGCLIENTENCODING` (a bad
    /// value is FATAL for libpq's connection, and so for the check's).
    pub options: Option<String>,
    /// `PGREQUIREAUTH` (libpq 16): the authentication the server may ask for.
    pub require_auth: Option<RequireAuth>,
    /// `PGSSLCERTMODE` (libpq 16).
    pub cert_mode: CertMode,
    /// The wire protocol's minor version libpq 18 requires (`PGMINPROTOCOLVERSION`): 0, or 2
    /// for 3.2, which the check then asks the server for.
    pub min_protocol: u16,
    /// `PGSSLNEGOTIATION` (libpq 17): `direct` starts TLS at once, without the SSLRequest round
    /// trip (ALPN `postgresql`, which PostgreSQL 17+ requires then).
    pub direct_tls: bool,
    /// `PGSSLSNI`: whether the host name goes out as SNI. libpq sends it only when the value
    /// starts with `1` (its default), so `0`, `true` and an empty value all turn it off.
    pub sni: bool,
    /// Variables set for the app that a newer libpq reads and the check does not judge: each
    /// gets a warning.
    pub unjudged: Vec<&'static str>,
    /// The root file libpq would read: `PGSSLROOTCERT`, else `~/.postgresql/root.crt`.
    pub root: Option<PathBuf>,
    /// Revocation lists.
    pub crl: CrlPlan,
    /// The client certificate files libpq would present on its own.
    pub client: ClientPlan,
    /// `PGHOSTADDR`'s entries: where to connect, while the name checked stays the host's
    /// (empty when unset; an empty entry leaves its host to be resolved).
    pub hostaddrs: Vec<Option<IpAddr>>,
    /// The connection time limit: `--connect-timeout`, else `PGCONNECT_TIMEOUT`.
    pub connect_timeout: Duration,
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

/// libpq 18 settings the check leaves to the app's libpq, with the version that reads them.
const UNJUDGED: [(&str, &str); 1] = [("PGOAUTHDEBUG", "18")];

/// One of a setting's `values` (the first is libpq's default, for an unset variable), or libpq's
/// words for any other: `VAR: invalid setting value: "..."`.
fn choice<T: Copy>(value: Option<&str>, (var, setting): (&str, &str), values: &[(&str, T)]) -> Result<T, Error> {
    let Some(value) = value else { return Ok(values[0].1) };
    values
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| Error::msg(Exit::Config, format!("{var}: invalid {setting} value: \"{value}\"")))
}

impl Libpq {
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

    /// Reads libpq's variables from `env` (with `home` for libpq's `~/.postgresql` defaults);
    /// `connect_timeout` is `--connect-timeout`, which wins over `PGCONNECT_TIMEOUT`.
    pub fn from_env(env: &ParentEnv, home: Option<&Path>, connect_timeout: Option<u64>) -> Result<Self, Error> {
        use ChannelBindingMode as Cb;
        use SessionAttrs as Sa;
        let channel_binding = choice(
            env.raw("PGCHANNELBINDING"),
            ("PGCHANNELBINDING", "channel_binding"),
            &[("prefer", Cb::Prefer), ("require", Cb::Require), ("disable", Cb::Disable)],
        )?;
        let session = choice(
            env.raw("PGTARGETSESSIONATTRS"),
            ("PGTARGETSESSIONATTRS", "target_session_attrs"),
            &[
                ("any", Sa::Any),
                ("read-write", Sa::ReadWrite),
                ("read-only", Sa::ReadOnly),
                ("primary", Sa::Primary),
                ("standby", Sa::Standby),
                ("prefer-standby", Sa::PreferStandby),
            ],
        )?;
        let load_balance = choice(
            env.raw("PGLOADBALANCEHOSTS"),
            ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
            &[("disable", false), ("random", true)],
        )?;
        let sni = env.raw("PGSSLSNI").is_none_or(|v| v.starts_with('1'));
        // An empty PGREQUIREAUTH is a value for libpq (it allows nothing).
        let require_auth = env
            .raw("PGREQUIREAUTH")
            .map(RequireAuth::parse)
            .transpose()
            .map_err(|e| Error::msg(Exit::Config, format!("PGREQUIREAUTH: {e}")))?;
        // libpq 17's values and words; an empty value is the default, as libpq's `get` has it.
        let direct_tls = choice(
            env.get("PGSSLNEGOTIATION"),
            ("PGSSLNEGOTIATION", "sslnegotiation"),
            &[("postgres", false), ("direct", true)],
        )?;
        // An empty value is a value here (libpq 16-18 refuse it).
        let cert_mode = choice(
            env.raw("PGSSLCERTMODE"),
            ("PGSSLCERTMODE", "sslcertmode"),
            &[("allow", CertMode::Allow), ("disable", CertMode::Disable), ("require", CertMode::Require)],
        )?;
        let unjudged = UNJUDGED.iter().map(|(var, _)| *var).filter(|var| env.raw(var).is_some()).collect();
        let named = env.get("PGSSLCRL").map(PathBuf::from);
        let default = home.map(|h| h.join(".postgresql/root.crl"));
        let crl = CrlPlan {
            file: named.clone().or_else(|| default.clone().filter(|_| env.get("PGSSLCRLDIR").is_none())),
            dir: env.get("PGSSLCRLDIR").map(PathBuf::from),
            named,
            default,
        };
        // libpq treats an empty PGSSLCERT/PGSSLKEY/PGSSLROOTCERT as unset (as `get` does).
        let file_or = |name, default| env.get(name).map(PathBuf::from).or_else(|| home.map(|h| h.join(default)));
        // sslcertmode=disable: libpq does not look for the files at all.
        let client = if cert_mode == CertMode::Disable {
            ClientPlan::default()
        } else {
            ClientPlan {
                cert: file_or("PGSSLCERT", ".postgresql/postgresql.crt"),
                key: file_or("PGSSLKEY", ".postgresql/postgresql.key"),
            }
        };
        let hostaddrs = env.get("PGHOSTADDR").map(hosts::parse_hostaddrs).transpose()?.unwrap_or_default();
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
        Ok(Self {
            tls: TlsRange::from_env(env)?,
            channel_binding,
            session,
            load_balance,
            options: server_options(env),
            sni,
            direct_tls,
            cert_mode,
            min_protocol: protocol::min_minor(env)?,
            require_auth,
            unjudged,
            root: file_or("PGSSLROOTCERT", ".postgresql/root.crt"),
            crl,
            client,
            hostaddrs,
            connect_timeout: Duration::from_secs(connect_timeout.or(env_timeout).unwrap_or(10)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libpq's view of `pairs` as the inherited environment, home /home/u.
    fn libpq(pairs: &[(&str, &str)]) -> Result<Libpq, Error> {
        Libpq::from_env(&ParentEnv::from_pairs(pairs.iter().copied()), Some(Path::new("/home/u")), None)
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
            libpq(&[("PGCHANNELBINDING", "require"), ("PGTARGETSESSIONATTRS", "read-write"), ("PGOPTIONS", "-c x=1")])
                .unwrap();
        assert_eq!(p.channel_binding, ChannelBindingMode::Require);
        assert_eq!(p.session, SessionAttrs::ReadWrite);
        assert_eq!(p.options.as_deref(), Some("-c x=1"));
        let p = libpq(&[("PGTARGETSESSIONATTRS", "prefer-standby"), ("PGOPTIONS", "")]).unwrap();
        assert_eq!(
            (p.channel_binding, p.session, p.options),
            (ChannelBindingMode::Prefer, SessionAttrs::PreferStandby, None)
        );
        assert_eq!(libpq(&[("PGTARGETSESSIONATTRS", "standby")]).unwrap().session, SessionAttrs::Standby);
        let e = libpq(&[("PGCHANNELBINDING", "maybe")]).unwrap_err();
        assert_eq!(e.exit(), Exit::Config);
        assert!(e.to_string().contains("invalid channel_binding value: \"maybe\""), "{e}");
        let e = libpq(&[("PGTARGETSESSIONATTRS", "sometimes")]).unwrap_err();
        assert!(e.to_string().contains("invalid target_session_attrs value: \"sometimes\""), "{e}");
    }

    #[test]
    fn sslcertmode_disable_reads_no_certificate_file() {
        let p = libpq(&[("PGSSLCERT", "/c.crt")]).unwrap();
        assert_eq!((p.cert_mode, p.client.cert.as_deref()), (CertMode::Allow, Some(Path::new("/c.crt"))));
        let p = libpq(&[("PGSSLCERT", "/c.crt"), ("PGSSLCERTMODE", "disable")]).unwrap();
        assert_eq!((p.cert_mode, p.client.cert, p.client.key), (CertMode::Disable, None, None));
        assert_eq!(libpq(&[("PGSSLCERTMODE", "require")]).unwrap().cert_mode, CertMode::Require);
        let e = libpq(&[("PGSSLCERTMODE", "")]).unwrap_err();
        assert_eq!(e.to_string(), "PGSSLCERTMODE: invalid sslcertmode value: \"\"");
        let e = libpq(&[("PGLOADBALANCEHOSTS", "Random")]).unwrap_err();
        assert_eq!(e.to_string(), "PGLOADBALANCEHOSTS: invalid load_balance_hosts value: \"Random\"");
    }

    #[test]
    fn connect_timeout_follows_pgconnect_timeout() {
        let env = ParentEnv::from_pairs([("PGCONNECT_TIMEOUT", "1")]);
        assert_eq!(Libpq::from_env(&env, Some(Path::new("/h")), None).unwrap().connect_timeout, Duration::from_secs(2));
        let env = ParentEnv::from_pairs([("PGCONNECT_TIMEOUT", "30")]);
        assert_eq!(
            Libpq::from_env(&env, Some(Path::new("/h")), None).unwrap().connect_timeout,
            Duration::from_secs(30)
        );
        for forever in ["0", "-5"] {
            let env = ParentEnv::from_pairs([("PGCONNECT_TIMEOUT", forever)]);
            assert_eq!(
                Libpq::from_env(&env, Some(Path::new("/h")), None).unwrap().connect_timeout,
                Duration::from_secs(10)
            );
        }
        for junk in ["", "abc", "3x", "3000000000"] {
            let env = ParentEnv::from_pairs([("PGCONNECT_TIMEOUT", junk)]);
            let e = Libpq::from_env(&env, Some(Path::new("/h")), None).unwrap_err();
            assert_eq!(e.exit(), Exit::Config, "{junk:?}");
            assert!(e.to_string().contains(&format!("invalid integer value \"{junk}\"")), "{e}");
        }
    }

    #[test]
    fn start_up_settings_become_escaped_server_options() {
        let p = libpq(&[
            ("PGOPTIONS", "-c work_mem=64MB"),
            ("PGTZ", "Europe/Paris"),
            ("PGDATESTYLE", r"ISO, D\MY"),
            ("PGGEQO", "Default"),
            ("PGCLIENTENCODING", "auto"),
        ])
        .unwrap();
        assert_eq!(p.options.as_deref(), Some(r"-c work_mem=64MB -c datestyle=ISO,\ D\\MY -c timezone=Europe/Paris"));
        let p = libpq(&[("PGTZ", ""), ("PGCLIENTENCODING", "LATIN1"), ("PGDATESTYLE", "default")]).unwrap();
        assert_eq!(p.options.as_deref(), Some("-c timezone= -c client_encoding=LATIN1"));
        assert_eq!(libpq(&[("PGCLIENTENCODING", "")]).unwrap().options, None);
    }

    #[test]
    fn empty_libpq_variables_count_where_libpq_counts_them() {
        let sni = |value: Option<&str>| libpq(&value.map(|v| vec![("PGSSLSNI", v)]).unwrap_or_default()).unwrap().sni;
        assert_eq!(
            [None, Some("1"), Some("1x"), Some("0"), Some("true"), Some("")].map(sni),
            [true, true, true, false, false, false]
        );
        for var in ["PGCHANNELBINDING", "PGTARGETSESSIONATTRS"] {
            let e = libpq(&[(var, "")]).unwrap_err();
            assert!(e.to_string().contains("value: \"\""), "{var}: {e}");
        }
        // An empty PGSSLMINPROTOCOLVERSION is libpq's default, as an unset one.
        assert!(libpq(&[("PGSSLMINPROTOCOLVERSION", ""), ("PGOPTIONS", "")]).is_ok());
    }
}
