//! A moto server (the AWS Secrets Manager emulator), and a minimal client for its JSON API
//! (test set-up only). Requests carry a dummy SigV4 header so that moto files them under
//! `us-east-1`; moto does not check signatures.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{free_port_pair, with_pdeathsig};

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub port: u16,
    pub endpoint: String,
    log: PathBuf,
    _server: Child,
}

/// `$LAUNCHER_TEST_MOTO`, else the repo's `.venv/bin/moto_server`, else PATH.
fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LAUNCHER_TEST_MOTO") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() { venv } else { PathBuf::from("moto_server") }
}

impl Moto {
    /// Starts the process; [`Moto::wait_ready`] waits for it to answer.
    pub fn spawn(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port_pair();
        let log = dir.join("moto.log");
        let out = std::fs::File::create(&log).unwrap();
        let server = with_pdeathsig("KILL", moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (run the README's test command)", moto_binary().display()));
        Self { port, endpoint: format!("http://127.0.0.1:{port}"), log, _server: server }
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_mins(1);
        while self.call("ListSecrets", &serde_json::json!({})).map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "moto did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One Secrets Manager API call; `None` when nothing answers.
    pub fn call(&self, action: &str, body: &serde_json::Value) -> Option<(u16, serde_json::Value)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let body = body.to_string();
        write!(
            stream,
            "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Amz-Target: secretsmanager.{action}\r\n\
             Content-Type: application/x-amz-json-1.1\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/secretsmanager/aws4_request, SignedHeaders=host, Signature=00\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        Some((status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null)))
    }

    fn ok(&self, action: &str, body: &serde_json::Value) -> serde_json::Value {
        let (status, answer) = self.call(action, body).expect("moto answers");
        assert_eq!(status, 200, "{action}: {answer}");
        answer
    }

    /// Creates a string secret; returns its ARN.
    pub fn create_string(&self, name: &str, value: &str) -> String {
        let answer = self.ok("CreateSecret", &serde_json::json!({"Name": name, "SecretString": value}));
        answer["ARN"].as_str().unwrap().to_owned()
    }

    /// Creates a binary secret (the API takes base64).
    pub fn create_binary(&self, name: &str, value: &[u8]) {
        let b64 = openssl::base64::encode_block(value);
        self.ok("CreateSecret", &serde_json::json!({"Name": name, "SecretBinary": b64}));
    }

    /// A new AWSCURRENT version; the old one becomes AWSPREVIOUS.
    pub fn put_string(&self, name: &str, value: &str) {
        self.ok("PutSecretValue", &serde_json::json!({"SecretId": name, "SecretString": value}));
    }
}
