//! Which server, database and role the app will use: explicit flag > the secret's field > the
//! inherited `PG*` variable > libpq's default.

use std::path::{Path, PathBuf};

use launcher_core::{DbSecret, SecretString};

use crate::error::{Error, Exit};
use crate::libpq::hosts::{self, Endpoint, Ports};
use crate::plan::Plan;

/// The connection the app will make.
#[derive(Debug)]
pub struct Target {
    /// The servers, in the order libpq tries them (one unless `PGHOST` lists several).
    pub endpoints: Vec<Endpoint>,
    /// The role.
    pub user: String,
    /// The database.
    pub dbname: String,
    /// The password the app is given, if any: the explicit one (the secret's, `PGPASSWORD`),
    /// else the `.pgpass` entry of a single host. With a host list and no explicit password the
    /// app's libpq looks each host up in the `.pgpass` itself, as the check does.
    pub password: Option<SecretString>,
    /// The password for each endpoint, as libpq would send it there.
    pub(crate) passwords: Vec<Option<SecretString>>,
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
        let ports = match (plan.overrides.port, secret.port, env.get("PGPORT")) {
            (Some(p), _, _) | (None, Some(p), _) => Ports::One(p),
            (None, None, Some(text)) => Ports::Env(text),
            (None, None, None) => Ports::Default,
        };
        let endpoints = hosts::endpoints(&host, ports, &plan.libpq.hostaddrs)?;
        // node-postgres reads one host; pgjdbc walks its own list by its own rules
        // (targetServerType), which the check does not speak for.
        if endpoints.len() > 1
            && let Some(driver) = plan.drivers.iter().find(|d| !d.walks_host_lists())
        {
            return Err(Error::msg(
                Exit::Config,
                format!(
                    "the database host list has {} servers, which {} does not walk as libpq does: give it one host",
                    endpoints.len(),
                    driver.name()
                ),
            ));
        }
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
        let explicit = secret.password.or_else(|| env.get("PGPASSWORD").map(|p| SecretString::new(p.to_owned())));
        let passwords: Vec<Option<SecretString>> = if let Some(password) = &explicit {
            endpoints.iter().map(|_| Some(password.clone())).collect()
        } else {
            let file = env
                .get("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".pgpass")));
            endpoints
                .iter()
                .map(|e| file.as_deref().and_then(|f| crate::libpq::pgpass::lookup(f, &e.host, e.port, &dbname, &user)))
                .collect()
        };
        let password = explicit.or_else(|| match passwords.as_slice() {
            [only] => only.clone(),
            _ => None,
        });
        let bad = |what: &str, problem: &str| Error::msg(Exit::DataErr, format!("the {what} from {source} {problem}"));
        for (what, value) in [("host", host.as_str()), ("user name", user.as_str()), ("database name", dbname.as_str())]
        {
            if value.contains('\0') {
                return Err(bad(what, "holds a NUL byte, which no environment variable can carry"));
            }
        }
        for password in passwords.iter().flatten() {
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
        Ok(Self { endpoints, user, dbname, password, passwords, source })
    }

    /// The first server of the list (the only one, usually).
    #[must_use]
    pub fn first(&self) -> &Endpoint {
        &self.endpoints[0]
    }

    /// The password libpq would send to the `i`th endpoint.
    #[must_use]
    pub fn password_for(&self, i: usize) -> Option<&SecretString> {
        self.passwords.get(i).and_then(Option::as_ref)
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
