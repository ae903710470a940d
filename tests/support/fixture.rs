//! A test's own role, password and KV secret holding everything the launcher needs.

use std::path::PathBuf;
use std::process::Command;

use super::{bao::ROOT_TOKEN, canary, launcher, services, unique};

/// One test's role, password and KV secret.
pub struct Fixture {
    pub role: String,
    pub password: String,
    pub home: PathBuf,
    pub kv_path: String,
}

impl Fixture {
    /// A role and a KV v2 secret holding everything: credentials, host, port, database, CA.
    pub fn new() -> Self {
        let s = services();
        let role = unique("app");
        let password = canary();
        s.pg.create_role(&role, &password);
        let kv_path = format!("tests/{role}");
        s.bao.put_kv2(
            &kv_path,
            &serde_json::json!({
                "username": role, "password": password, "host": "localhost",
                "port": s.pg.port.to_string(), "dbname": "postgres",
                "ca_pem": std::fs::read_to_string(&s.certs.ca).unwrap(),
            }),
        );
        Self { home: super::home(&role), role, password, kv_path }
    }

    pub fn credentials(&self) -> String {
        format!("vault:secret/{}", self.kv_path)
    }

    pub fn ca(&self) -> String {
        format!("vault:secret/{}#ca_pem", self.kv_path)
    }

    /// `launcher --credentials … --ca …` with Vault's address and root token in the environment.
    pub fn launcher(&self) -> Command {
        let mut c = launcher(&self.home);
        c.env("VAULT_ADDR", &services().bao.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .arg("--credentials")
            .arg(self.credentials())
            .arg("--ca")
            .arg(self.ca());
        c
    }
}
