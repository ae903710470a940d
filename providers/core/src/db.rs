//! Database credentials read out of a secret's fields, accepting the common shapes unchanged:
//! a Vault KV secret, a Vault `database/creds` response, an AWS RDS secret.

use crate::{Fields, Reference, SecretString, SourceError};

/// Field names tried, in order, for each value.
const USER: &[&str] = &["username", "user"];
const PASSWORD: &[&str] = &["password"];
const HOST: &[&str] = &["host"];
const PORT: &[&str] = &["port"];
const DBNAME: &[&str] = &["dbname", "database"];

/// What a credentials secret says about the connection. Every part is optional here: the
/// launcher fills gaps from flags and the inherited environment.
#[derive(Debug, Default)]
pub struct DbSecret {
    /// The role name (not secret: it is logged).
    pub user: Option<String>,
    /// The password.
    pub password: Option<SecretString>,
    /// The server host name or address.
    pub host: Option<String>,
    /// The server port.
    pub port: Option<u16>,
    /// The database name.
    pub dbname: Option<String>,
}

impl DbSecret {
    /// Reads the known fields; other fields are ignored. `port` may be a JSON number or a string.
    pub fn from_fields(fields: &Fields, reference: &Reference) -> Result<Self, SourceError> {
        let plain = |names: &[&str]| fields.first_of(names).map(|(_, v)| v.expose().to_owned());
        let port = match fields.first_of(PORT) {
            None => None,
            // libpq refuses port 0 too: it would dial nothing.
            Some((name, value)) => {
                Some(value.expose().trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    SourceError::bad_content(&reference.with_field(name), "is not a port number (1-65535)")
                })?)
            }
        };
        Ok(Self {
            user: plain(USER),
            password: fields.first_of(PASSWORD).map(|(_, v)| v.clone()),
            host: plain(HOST),
            port,
            dbname: plain(DBNAME),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &serde_json::Value) -> Fields {
        Fields::from_json_object(v.as_object().unwrap().clone())
    }

    #[test]
    fn reads_rds_and_kv_shapes() {
        let r = Reference::parse("vault:secret/db").unwrap();
        let rds = fields(&serde_json::json!({"engine":"postgres","host":"db","username":"app",
            "password":"pw","dbname":"prod","port":5432}));
        let s = DbSecret::from_fields(&rds, &r).unwrap();
        assert_eq!(
            (s.user.as_deref(), s.host.as_deref(), s.port, s.dbname.as_deref()),
            (Some("app"), Some("db"), Some(5432), Some("prod"))
        );
        assert_eq!(s.password.unwrap().expose(), "pw");
        let kv = fields(&serde_json::json!({"user":"app","password":"pw","port":"6432","database":"d"}));
        let s = DbSecret::from_fields(&kv, &r).unwrap();
        assert_eq!((s.user.as_deref(), s.port, s.dbname.as_deref()), (Some("app"), Some(6432), Some("d")));
    }

    #[test]
    fn bad_port_names_the_field_not_the_value() {
        let r = Reference::parse("vault:secret/db").unwrap();
        for port in [serde_json::json!("70000x"), serde_json::json!(0), serde_json::json!("0")] {
            let f = fields(&serde_json::json!({ "port": port }));
            let msg = DbSecret::from_fields(&f, &r).unwrap_err().to_string();
            assert_eq!(msg, "vault:secret/db#port: is not a port number (1-65535)");
        }
    }
}
