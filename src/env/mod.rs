//! The app's environment: the inherited one, minus the launcher's own settings and bootstrap
//! credentials, plus the libpq variables. Pure: no I/O, so every rule is tested here; how it is
//! printed by `launcher env` is [`render`]. (Over 400 lines with its tests, which pin each rule
//! beside it.)

mod render;

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::Path;

use launcher_core::SecretString;

use crate::plan::Plan;
use crate::target::Target;

/// The files the launcher wrote (or found) for libpq.
#[derive(Debug)]
pub struct Files<'a> {
    /// The CA bundle.
    pub root: &'a Path,
    /// The `.pgpass` file, with `--password-via passfile`.
    pub passfile: Option<&'a Path>,
    /// The client certificate and key.
    pub client: Option<&'a crate::check::ClientFiles>,
    /// The inherited NODE_EXTRA_CA_CERTS bundle with the CA added, for node-postgres.
    pub node_extra: Option<&'a Path>,
}

/// A value the launcher sets.
#[derive(Debug)]
pub enum Value {
    /// Printable.
    Plain(String),
    /// Redacted when printed without `--reveal`.
    Secret(SecretString),
}

impl Value {
    pub(super) fn shown(&self, reveal: bool) -> &str {
        match self {
            Self::Plain(v) => v,
            Self::Secret(s) if reveal => s.expose(),
            Self::Secret(_) => "<redacted>",
        }
    }
}

/// The app's environment, kept as "inherited" and "set" so that `launcher env` can show only
/// what the launcher decided.
#[derive(Debug)]
pub struct ChildEnv {
    inherited: Vec<(OsString, OsString)>,
    set: Vec<(&'static str, Value)>,
    /// Variables whose names the user chose (`--database-url VAR`).
    named: Vec<(String, Value)>,
    /// What was overridden and why (logged as warnings).
    pub warnings: Vec<String>,
}

impl ChildEnv {
    /// Builds the environment for `target`, with the CA at `root`.
    #[must_use]
    pub fn build(plan: &Plan, target: &Target, files: &Files<'_>, lease: Option<&crate::lease::LeaseInfo>) -> Self {
        let (root, passfile) = (files.root, files.passfile);
        let parent = &plan.env;
        let mut warnings = Vec::new();
        if let Some(mode) = parent.get("PGSSLMODE").filter(|m| *m != "verify-full") {
            warnings.push(format!("overriding inherited PGSSLMODE={mode} with verify-full"));
        }
        // libpq uses GSSAPI encryption, when a Kerberos ticket and the server allow it, in
        // preference to TLS whatever sslmode says (gssencmode=prefer is its default): the app's
        // connection would then not be the verify-full one the launcher checked.
        if let Some(mode) = parent.get("PGGSSENCMODE").filter(|m| *m != "disable") {
            warnings.push(format!(
                "overriding inherited PGGSSENCMODE={mode} with disable (the app connects with the TLS the launcher checked)"
            ));
        }
        if parent.get("PGSERVICE").is_some() && removed(plan, OsStr::new("PGSERVICE")) {
            warnings.push(
                "withholding inherited PGSERVICE: libpq would let the service file's settings override the PG* \
                 variables the launcher sets, sslmode=verify-full included"
                    .to_owned(),
            );
        }
        if plan.database_url.is_none() && parent.get("DATABASE_URL").is_some() {
            warnings.push(
                "inherited DATABASE_URL reaches the app unchanged and unchecked (--database-url replaces it with the \
                 connection the launcher checked)"
                    .to_owned(),
            );
        }
        if crate::tls::chain::is_system(root) {
            warnings.push(
                "PGSSLROOTCERT=system: the check trusts the system's roots, as libpq 16 and later do (an older libpq \
                 looks for a file named \"system\")"
                    .to_owned(),
            );
        }
        if let Some(old) = parent.get("PGSSLROOTCERT").filter(|p| Path::new(p) != root) {
            warnings.push(format!("overriding inherited PGSSLROOTCERT={old} with the fetched CA bundle"));
        }
        // A host list goes back as libpq reads it; PGHOSTADDR, which the check honoured, stays
        // inherited.
        let (hosts, ports, _) = crate::libpq::hosts::render(&target.endpoints);
        let mut set: Vec<(&'static str, Value)> = vec![
            ("PGHOST", Value::Plain(hosts)),
            ("PGPORT", Value::Plain(ports)),
            ("PGDATABASE", Value::Plain(target.dbname.clone())),
            ("PGUSER", Value::Plain(target.user.clone())),
        ];
        match (passfile, &target.password) {
            (Some(file), _) => set.push(("PGPASSFILE", Value::Plain(file.display().to_string()))),
            (None, Some(pw)) => set.push(("PGPASSWORD", Value::Secret(pw.clone()))),
            (None, None) => {}
        }
        set.push(("PGSSLMODE", Value::Plain("verify-full".into())));
        set.push(("PGGSSENCMODE", Value::Plain("disable".into())));
        set.push(("PGSSLROOTCERT", Value::Plain(root.display().to_string())));
        if let Some(client) = files.client {
            set.push(("PGSSLCERT", Value::Plain(client.cert.display().to_string())));
            set.push(("PGSSLKEY", Value::Plain(client.key.display().to_string())));
        }
        let mut named: Vec<(String, Value)> = Vec::new();
        if let Some(lease) = lease {
            named.push(("DB_CREDENTIALS_LEASE_ID".into(), Value::Plain(lease.id.clone())));
            named.push(("DB_CREDENTIALS_EXPIRES_AT".into(), Value::Plain(lease.expires_at.clone())));
        }
        if let Some(var) = &plan.database_url {
            let password = if passfile.is_some() { None } else { target.password.as_ref() };
            named.push((var.clone(), Value::Secret(database_url(target, root, password, &plan.libpq))));
        }
        // node-postgres ignores PGSSLROOTCERT: Node trusts its bundled roots and the file
        // NODE_EXTRA_CA_CERTS names (read once, at start-up), which must keep an inherited one's.
        if plan.drivers.contains(&crate::drivers::Driver::NodePostgres) && !crate::tls::chain::is_system(root) {
            let bundle = files.node_extra.unwrap_or(root);
            named.push(("NODE_EXTRA_CA_CERTS".into(), Value::Plain(bundle.display().to_string())));
        }
        // pgjdbc reads no PG* variable but PGPASSFILE: an app built from PGHOST… would connect
        // with sslmode=prefer. It gets the verify-full URL, the user and (unless the password is
        // in the .pgpass, which pgjdbc reads) the password, as Heroku names them.
        if plan.drivers.contains(&crate::drivers::Driver::Pgjdbc) {
            named.push(("JDBC_DATABASE_URL".into(), Value::Plain(jdbc_url(target, root, files.client))));
            named.push(("JDBC_DATABASE_USERNAME".into(), Value::Plain(target.user.clone())));
            if let (None, Some(password)) = (passfile, &target.password) {
                named.push(("JDBC_DATABASE_PASSWORD".into(), Value::Secret(password.clone())));
            }
        }
        // Other inherited values the launcher replaces (PGSSLMODE, PGGSSENCMODE and PGSSLROOTCERT were
        // reported above, with more to say). Names only: the old value may be a password.
        for (name, value) in set.iter().map(|(k, v)| (*k, v)).chain(named.iter().map(|(k, v)| (k.as_str(), v))) {
            if matches!(name, "PGSSLMODE" | "PGGSSENCMODE" | "PGSSLROOTCERT") {
                continue;
            }
            if parent.get(name).is_some_and(|old| old != value.shown(true)) {
                warnings.push(format!("overriding inherited {name}"));
            }
        }
        // A password the app would otherwise still find in the inherited environment.
        let withheld: &[&str] = if passfile.is_some() { &["PGPASSWORD"] } else { &[] };
        let inherited = parent
            .iter()
            .filter(|(k, _)| {
                (!plan.pristine || pristine_keeps(k) || plan.keep.iter().any(|n| OsStr::new(n) == *k))
                    && !removed(plan, k)
                    && !withheld.iter().any(|w| OsStr::new(w) == *k)
                    && !set.iter().any(|(name, _)| OsStr::new(name) == *k)
                    && !named.iter().any(|(name, _)| OsStr::new(name) == *k)
            })
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self { inherited, set, named, warnings }
    }

    /// Every variable, for the exec.
    pub fn pairs(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.inherited
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
            .chain(self.set.iter().map(|(k, v)| (OsStr::new(*k), OsStr::new(v.shown(true)))))
            .chain(self.named.iter().map(|(k, v)| (OsStr::new(k.as_str()), OsStr::new(v.shown(true)))))
    }

    /// What the launcher sets, in order.
    pub(super) fn shown(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.set.iter().map(|(k, v)| (*k, v)).chain(self.named.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

/// `postgresql://user:password@host:port/db?sslmode=verify-full&sslrootcert=…[&hostaddr=…]`,
/// every part percent-encoded (all but RFC 3986's unreserved characters), so that libpq,
/// tokio-postgres and URL parsers all read back the same values. A host list is libpq's
/// `host1:port1,host2:port2`, with the `target_session_attrs` and `load_balance_hosts` the
/// check walked it by (URL parameters win over the variables for libpq). Written straight into
/// a zeroizing buffer: a `url::Url` would keep the password in a `String` nobody can wipe.
fn database_url(
    target: &Target,
    root: &Path,
    password: Option<&SecretString>,
    libpq: &crate::libpq::Libpq,
) -> SecretString {
    let mut url = String::from("postgresql://");
    encode_into(&mut url, &target.user);
    if let Some(pw) = password {
        url.push(':');
        encode_into(&mut url, pw.expose());
    }
    url.push('@');
    for (i, endpoint) in target.endpoints.iter().enumerate() {
        if i > 0 {
            url.push(',');
        }
        if endpoint.host.parse::<std::net::Ipv6Addr>().is_ok() {
            url.push('[');
            url.push_str(&endpoint.host);
            url.push(']');
        } else {
            encode_into(&mut url, &endpoint.host);
        }
        let _ = write!(url, ":{}", endpoint.port);
    }
    url.push('/');
    encode_into(&mut url, &target.dbname);
    url.push_str("?sslmode=verify-full&sslrootcert=");
    encode_into(&mut url, &root.display().to_string());
    if let (_, _, Some(addrs)) = crate::libpq::hosts::render(&target.endpoints) {
        url.push_str("&hostaddr=");
        encode_into(&mut url, &addrs);
    }
    if libpq.session != crate::libpq::SessionAttrs::Any {
        let _ = write!(url, "&target_session_attrs={}", libpq.session.name());
    }
    if libpq.load_balance {
        url.push_str("&load_balance_hosts=random");
    }
    SecretString::new(url)
}

/// `jdbc:postgresql://host:port/db?sslmode=verify-full&sslrootcert=…`: no credentials in it
/// (pgjdbc's exceptions repeat the URL), the database and the file percent-encoded (pgjdbc
/// URL-decodes both).
fn jdbc_url(target: &Target, root: &Path, client: Option<&crate::check::ClientFiles>) -> String {
    // One host: a host list is refused with pgjdbc (target::Target::resolve).
    let endpoint = target.first();
    let mut url = String::from("jdbc:postgresql://");
    if endpoint.host.parse::<std::net::Ipv6Addr>().is_ok() {
        let _ = write!(url, "[{}]", endpoint.host);
    } else {
        url.push_str(&endpoint.host);
    }
    let _ = write!(url, ":{}/", endpoint.port);
    encode_into(&mut url, &target.dbname);
    url.push_str("?sslmode=verify-full&sslrootcert=");
    encode_into(&mut url, &root.display().to_string());
    // pgjdbc looks for ~/.postgresql/postgresql.crt and .pk8 otherwise: the issued pair, or none.
    if let Some(pk8) = client.and_then(|c| c.pk8.as_deref().map(|pk8| (&c.cert, pk8))) {
        url.push_str("&sslcert=");
        encode_into(&mut url, &pk8.0.display().to_string());
        url.push_str("&sslkey=");
        encode_into(&mut url, &pk8.1.display().to_string());
    }
    url
}

/// `value` as the URLs the launcher builds carry it (everything but RFC 3986's unreserved
/// characters percent-encoded).
#[must_use]
pub fn encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    encode_into(&mut out, value);
    out
}

fn encode_into(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// What `--pristine` passes through besides `--keep-env`: what a process needs to run at all
/// and what service managers hand to it (systemd notify and socket activation).
fn pristine_keeps(name: &OsStr) -> bool {
    const KEEP: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TERM",
        "LANG",
        "TZ",
        "TMPDIR",
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "RUNTIME_DIRECTORY",
        "STATE_DIRECTORY",
        "CACHE_DIRECTORY",
        "LOGS_DIRECTORY",
        "CONFIGURATION_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
    ];
    name.to_str().is_some_and(|n| KEEP.contains(&n) || n.starts_with("LC_"))
}

/// Whether an inherited variable is withheld from the app: the launcher's own settings and the
/// bootstrap credentials it used, unless `--keep-env` names them.
fn removed(plan: &Plan, name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    (plan.strip.contains(&name) || name.starts_with("LAUNCHER_")) && !plan.keep.iter().any(|k| k == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::EnvFormat;
    use crate::error::Exit;
    use crate::libpq::hosts::Endpoint;
    use crate::plan::ParentEnv;

    fn plan(parent: ParentEnv) -> Plan {
        plan_with(parent, &["launcher", "--", "true"])
    }

    fn plan_with(parent: ParentEnv, args: &[&str]) -> Plan {
        use clap::Parser;
        let options = crate::cli::Cli::parse_from(args).options;
        Plan::new(&options, parent, Some(Path::new("/home/u"))).unwrap()
    }

    #[test]
    fn static_aws_keys_are_removed_only_when_used_and_keep_env_passes_them() {
        let parent = || {
            ParentEnv::from_pairs([
                ("AWS_ACCESS_KEY_ID", "AKIA"),
                ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
                ("AWS_REGION", "us-east-1"),
                ("VAULT_TOKEN", "t"),
            ])
        };
        let names =
            |env: &ChildEnv| -> Vec<String> { env.pairs().map(|(k, _)| k.to_string_lossy().into_owned()).collect() };
        let unused = ChildEnv::build(
            &plan(parent()),
            &target(),
            &Files { root: Path::new("/r"), passfile: None, client: None, node_extra: None },
            None,
        );
        assert!(names(&unused).contains(&"AWS_SECRET_ACCESS_KEY".to_owned()), "not used, not touched");
        assert!(!names(&unused).contains(&"VAULT_TOKEN".to_owned()));
        let used = plan_with(parent(), &["launcher", "--credentials", "aws-sm:db", "--", "true"]);
        let env = ChildEnv::build(
            &used,
            &target(),
            &Files { root: Path::new("/r"), passfile: None, client: None, node_extra: None },
            None,
        );
        assert!(!names(&env).iter().any(|n| n == "AWS_ACCESS_KEY_ID" || n == "AWS_SECRET_ACCESS_KEY"));
        assert!(names(&env).contains(&"AWS_REGION".to_owned()));
        let kept = plan_with(
            parent(),
            &["launcher", "--credentials", "aws-sm:db", "--keep-env", "AWS_ACCESS_KEY_ID,VAULT_TOKEN", "--", "true"],
        );
        let env = ChildEnv::build(
            &kept,
            &target(),
            &Files { root: Path::new("/r"), passfile: None, client: None, node_extra: None },
            None,
        );
        assert!(names(&env).contains(&"AWS_ACCESS_KEY_ID".to_owned()));
        assert!(names(&env).contains(&"VAULT_TOKEN".to_owned()));
        assert!(!names(&env).contains(&"AWS_SECRET_ACCESS_KEY".to_owned()));
    }

    fn target() -> Target {
        let password = Some(SecretString::new("p'w$\"x".into()));
        Target {
            endpoints: vec![Endpoint { host: "db.test".into(), hostaddr: None, port: 5433 }],
            user: "app".into(),
            dbname: "prod".into(),
            passwords: vec![password.clone()],
            password,
            source: "vault:secret/db".into(),
        }
    }

    #[test]
    fn removes_bootstrap_and_own_variables_and_forces_verify_full() {
        let parent = ParentEnv::from_pairs([
            ("PATH", "/bin"),
            ("VAULT_TOKEN", "s.tok"),
            ("BAO_TOKEN", "b.tok"),
            ("LAUNCHER_CREDENTIALS", "vault:x"),
            ("PGSSLMODE", "require"),
            ("PGGSSENCMODE", "prefer"),
            ("PGSERVICE", "legacy"),
            ("PGHOST", "old"),
        ]);
        let env = ChildEnv::build(
            &plan(parent),
            &target(),
            &Files { root: Path::new("/run/x/root.crt"), passfile: None, client: None, node_extra: None },
            None,
        );
        let pairs: Vec<(String, String)> =
            env.pairs().map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into())).collect();
        let get = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("VAULT_TOKEN"), None);
        assert_eq!(get("BAO_TOKEN"), None);
        assert_eq!(get("LAUNCHER_CREDENTIALS"), None);
        assert_eq!(get("PGSSLMODE"), Some("verify-full"));
        assert_eq!(get("PGGSSENCMODE"), Some("disable"));
        assert_eq!(get("PGSERVICE"), None);
        assert_eq!(get("PGHOST"), Some("db.test"));
        assert_eq!(get("PGPASSWORD"), Some("p'w$\"x"));
        assert_eq!(pairs.iter().filter(|(k, _)| k == "PGHOST").count(), 1);
        assert_eq!(
            env.warnings,
            [
                "overriding inherited PGSSLMODE=require with verify-full",
                "overriding inherited PGGSSENCMODE=prefer with disable (the app connects with the TLS the launcher checked)",
                "withholding inherited PGSERVICE: libpq would let the service file's settings override the PG* \
                 variables the launcher sets, sslmode=verify-full included",
                "overriding inherited PGHOST"
            ]
        );
    }

    #[test]
    fn database_url_round_trips_through_a_url_parser() {
        let mut t = target();
        t.password = Some(SecretString::new("p@ss:w/rd?#%+ é".into()));
        t.user = "app user".into();
        let libpq = plan(ParentEnv::default()).libpq;
        let url = database_url(&t, Path::new("/run/a b/root.crt"), t.password.as_ref(), &libpq);
        let parsed = url::Url::parse(url.expose()).unwrap();
        let decode = |s: &str| {
            let bytes: Vec<u8> = s.as_bytes().to_vec();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        };
        assert_eq!(decode(parsed.password().unwrap()), "p@ss:w/rd?#%+ é");
        assert_eq!(decode(parsed.username()), "app user");
        assert_eq!(parsed.host_str(), Some("db.test"));
        assert_eq!(parsed.port(), Some(5433));
        let query: Vec<(String, String)> =
            parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(
            query,
            [("sslmode".into(), "verify-full".into()), ("sslrootcert".into(), "/run/a b/root.crt".into())]
        );
        assert!(!format!("{url:?}").contains("p%40ss"));
    }

    #[test]
    fn pristine_keeps_only_the_basics_and_what_is_kept() {
        let parent = ParentEnv::from_pairs([
            ("PATH", "/bin"),
            ("LC_ALL", "C"),
            ("NOTIFY_SOCKET", "/run/n"),
            ("SECRET_API_KEY", "x"),
            ("APP_MODE", "prod"),
            ("PGHOST", "old.example"),
        ]);
        let p = plan_with(parent, &["launcher", "--pristine", "--keep-env", "APP_MODE", "--", "true"]);
        let env = ChildEnv::build(
            &p,
            &target(),
            &Files { root: Path::new("/r"), passfile: None, client: None, node_extra: None },
            None,
        );
        let names: Vec<String> = env.pairs().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        for kept in ["PATH", "LC_ALL", "NOTIFY_SOCKET", "APP_MODE", "PGHOST", "PGSSLMODE"] {
            assert!(names.contains(&kept.to_owned()), "{kept}: {names:?}");
        }
        assert!(!names.contains(&"SECRET_API_KEY".to_owned()));
        assert_eq!(env.warnings, ["overriding inherited PGHOST"]);
    }

    #[test]
    fn renders_redacted_unless_revealed() {
        let env = ChildEnv::build(
            &plan(ParentEnv::default()),
            &target(),
            &Files { root: Path::new("/r/root.crt"), passfile: None, client: None, node_extra: None },
            None,
        );
        let shell = env.render(EnvFormat::Shell, false).unwrap();
        assert!(shell.contains("export PGPASSWORD='<redacted>'\n"), "{shell}");
        assert!(env.render(EnvFormat::Shell, true).unwrap().contains(r"export PGPASSWORD='p'\''w$"), "quoted for sh");
        let e = env.render(EnvFormat::Dotenv, true).unwrap_err();
        assert_eq!(e.exit(), Exit::DataErr);
        assert!(e.to_string().starts_with("--format dotenv: PGPASSWORD holds characters"), "{e}");
        assert!(env.render(EnvFormat::Dotenv, false).unwrap().contains("PGPASSWORD='<redacted>'\n"));
        let json: serde_json::Value = serde_json::from_str(&env.render(EnvFormat::Json, false).unwrap()).unwrap();
        assert_eq!(json["PGPASSWORD"], "<redacted>");
        assert_eq!(json["PGSSLMODE"], "verify-full");
    }
}
