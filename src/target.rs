//! Which server, database and role the app will use: explicit flag > the secret's field > the
//! inherited `PG*` variable > libpq's default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use launcher_core::{DbSecret, SecretString};

use crate::error::{Error, Exit};
use crate::plan::Plan;

/// The connection the app will make.
#[derive(Debug)]
pub struct Target {
    /// The host name (also the name the certificate must carry).
    pub host: String,
    /// `PGHOSTADDR`, if set: the address actually dialled.
    pub hostaddr: Option<IpAddr>,
    /// The port.
    pub port: u16,
    /// The role.
    pub user: String,
    /// The database.
    pub dbname: String,
    /// The password, if any.
    pub password: Option<SecretString>,
    /// Where the credentials came from, for messages (`vault:secret/app/db`).
    pub source: String,
}

impl Target {
    /// Combines the plan and the secret.
    pub fn resolve(plan: &Plan, secret: DbSecret) -> Result<Self, Error> {
        let env = &plan.env;
        let source = plan.credentials.as_ref().map_or_else(|| "the environment".to_owned(), ToString::to_string);
        // What a missing value's error suggests: a field only where there is a secret to add it to.
        let missing = |what: &str, flag: &str, field: &str, var: &str| {
            let field =
                plan.credentials.as_ref().map(|c| format!(", add a \"{field}\" field to {c}")).unwrap_or_default();
            Error::msg(Exit::Config, format!("no database {what}: pass {flag}{field}, or set {var}"))
        };
        let host = plan
            .overrides
            .host
            .clone()
            .or(secret.host)
            .or_else(|| env.get("PGHOST").map(str::to_owned))
            .ok_or_else(|| missing("host", "--host", "host", "PGHOST"))?;
        if host.starts_with('/') || host.starts_with('@') {
            return Err(Error::msg(
                Exit::Config,
                format!("database host \"{host}\" is a Unix socket, which has no TLS to verify: give a TCP host name"),
            ));
        }
        if host.contains(',') {
            return Err(Error::msg(
                Exit::Config,
                format!("database host \"{host}\" lists several hosts; give exactly one"),
            ));
        }
        let port = match (plan.overrides.port, secret.port, env.get("PGPORT")) {
            (Some(p), _, _) | (None, Some(p), _) => p,
            (None, None, Some(text)) => text
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| Error::msg(Exit::Config, format!("PGPORT: \"{text}\" is not a port number")))?,
            (None, None, None) => 5432,
        };
        let user = plan
            .overrides
            .user
            .clone()
            .or(secret.user)
            .or_else(|| env.get("PGUSER").map(str::to_owned))
            .or_else(os_user)
            .ok_or_else(|| missing("user", "--user", "username", "PGUSER"))?;
        let dbname = plan
            .overrides
            .dbname
            .clone()
            .or(secret.dbname)
            .or_else(|| env.get("PGDATABASE").map(str::to_owned))
            .unwrap_or_else(|| user.clone());
        let password =
            secret.password.or_else(|| env.get("PGPASSWORD").map(|p| SecretString::new(p.to_owned()))).or_else(|| {
                let file = env
                    .get("PGPASSFILE")
                    .map(PathBuf::from)
                    .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".pgpass")))?;
                crate::libpq::pgpass::lookup(&file, &host, port, &dbname, &user)
            });
        let bad = |what: &str, problem: &str| Error::msg(Exit::DataErr, format!("the {what} from {source} {problem}"));
        for (what, value) in [("host", host.as_str()), ("user name", user.as_str()), ("database name", dbname.as_str())]
        {
            if value.contains('\0') {
                return Err(bad(what, "holds a NUL byte, which no environment variable can carry"));
            }
        }
        if let Some(password) = &password {
            if password.expose().contains('\0') {
                return Err(bad("password", "holds a NUL byte, which no environment variable can carry"));
            }
            // SCRAM's PBKDF2 hashes the password 8192 times: a megabyte-long one keeps the check
            // (and every connection of the app) busy for seconds and ends in a time-out.
            if password.expose().len() > MAX_PASSWORD {
                return Err(bad(
                    "password",
                    &format!("is longer than {MAX_PASSWORD} bytes, the most the launcher accepts"),
                ));
            }
        }
        Ok(Self { host, hostaddr: plan.libpq.hostaddr, port, user, dbname, password, source })
    }
}

/// The longest password accepted, in bytes: far above what stores generate (Vault's default
/// policy makes 20 characters, AWS allows 4096 for a secret's random password).
pub const MAX_PASSWORD: usize = 4096;

/// libpq's default user: the name of the effective OS user.
fn os_user() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut parts = line.split(':');
        let name = parts.next()?;
        let id = parts.nth(1)?.parse::<u32>().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}
