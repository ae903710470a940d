//! An OpenBao dev server, and a minimal HTTP client for its API (test set-up only).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{free_port_pair, with_pdeathsig};

pub const ROOT_TOKEN: &str = "root";

pub struct Bao {
    pub port: u16,
    pub addr: String,
    /// The file audit device's log: every request the server answered, one JSON line each.
    pub audit_log: PathBuf,
    _server: Child,
}

/// `$LAUNCHER_TEST_BAO`, else the repo's `.venv/bin/bao`, else `bao` on PATH.
pub fn bao_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LAUNCHER_TEST_BAO") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao");
    if venv.exists() { venv } else { PathBuf::from("bao") }
}

impl Bao {
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port_pair();
        let log = std::fs::File::create(dir.join("bao.log")).unwrap();
        // OpenBao enables audit devices from its configuration only (not through the API).
        let audit_log = dir.join("audit.log");
        let config = dir.join("audit.hcl");
        std::fs::write(
            &config,
            format!("audit \"file\" \"log\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n", audit_log.display()),
        )
        .unwrap();
        let server = with_pdeathsig("KILL", bao_binary())
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-config={}", config.display()),
            ])
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {}: {e} (run the README's test command, which installs it)", bao_binary().display())
            });
        let bao = Self { port, addr: format!("http://127.0.0.1:{port}"), audit_log, _server: server };
        let deadline = Instant::now() + Duration::from_secs(30);
        while bao.request("GET", "/v1/sys/health", None, None).map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "OpenBao did not start: {}",
                std::fs::read_to_string(dir.join("bao.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bao
    }

    /// How many reads of exactly `path` (`secret/data/…`) the audit log holds.
    pub fn audited_reads(&self, path: &str) -> usize {
        std::fs::read_to_string(&self.audit_log)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["type"] == "request" && e["request"]["operation"] == "read" && e["request"]["path"] == path)
            .count()
    }

    /// One HTTP/1.0 request; `None` when nothing answers.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Option<(u16, String)> {
        self.request_with(method, path, token, body, "")
    }

    /// A request with extra header lines (each ending in CRLF), e.g. `X-Vault-Wrap-TTL`.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
        headers: &str,
    ) -> Option<(u16, String)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let body = body.map(ToString::to_string).unwrap_or_default();
        let token = token.map(|t| format!("X-Vault-Token: {t}\r\n")).unwrap_or_default();
        write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{token}{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Some((status, body))
    }

    /// A request as root that must succeed; returns the JSON answer (or Null).
    pub fn api(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> serde_json::Value {
        let (status, text) = self.request(method, path, Some(ROOT_TOKEN), body).expect("OpenBao answers");
        assert!((200..300).contains(&status), "{method} {path}: HTTP {status}: {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Writes a KV v2 secret at `secret/<path>`.
    pub fn put_kv2(&self, path: &str, data: &serde_json::Value) {
        self.api("POST", &format!("/v1/secret/data/{path}"), Some(&serde_json::json!({ "data": data })));
    }

    /// Mounts a KV v1 engine at `mount` (idempotent per name: tests use unique names).
    pub fn mount_kv1(&self, mount: &str) {
        self.api(
            "POST",
            &format!("/v1/sys/mounts/{mount}"),
            Some(&serde_json::json!({"type": "kv", "options": {"version": "1"}})),
        );
    }

    /// Waits until a KV v2 engine freshly mounted at `mount` takes writes: OpenBao upgrades
    /// a new mount in the background and answers 400 ("Upgrading from non-versioned to
    /// versioned data") until it is done. `headers` as in `request_with` (a namespace).
    pub fn wait_kv2_ready(&self, mount: &str, headers: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let answer = self.request_with("GET", &format!("/v1/{mount}/config"), Some(ROOT_TOKEN), None, headers);
            match answer {
                Some((200, _)) => return,
                other => assert!(Instant::now() < deadline, "KV v2 at {mount} never became ready: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A token with only the `default` policy (which reads no secret).
    pub fn weak_token(&self) -> String {
        let v = self.api("POST", "/v1/auth/token/create", Some(&serde_json::json!({"policies": ["default"]})));
        v["auth"]["client_token"].as_str().unwrap().to_owned()
    }
}
