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
    /// The root token: the dev server's fixed one, or a cluster's from `bao operator init`.
    pub token: String,
    server: Child,
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
        let bao =
            Self { port, addr: format!("http://127.0.0.1:{port}"), audit_log, token: ROOT_TOKEN.to_owned(), server };
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

    /// Kills the server (a dev server keeps nothing: it does not come back).
    pub fn kill(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
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
        let (status, text) = self.request(method, path, Some(&self.token), body).expect("OpenBao answers");
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
            let answer = self.request_with("GET", &format!("/v1/{mount}/config"), Some(&self.token), None, headers);
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

/// A three-node OpenBao cluster as production runs one: raft storage on loopback ports,
/// initialized and unsealed (`bao operator init`/`unseal`, one key share), every node a voter.
/// The nodes forward requests to the active one, and elect another when it dies.
pub struct BaoCluster {
    /// The nodes; `None` once killed.
    pub nodes: Vec<Option<Bao>>,
}

impl BaoCluster {
    pub fn start(dir: &Path) -> Self {
        let ports: Vec<u16> = (0..3).map(|_| free_port_pair()).collect();
        let leader_api = format!("http://127.0.0.1:{}", ports[0]);
        let mut nodes = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let node = dir.join(format!("n{i}"));
            std::fs::create_dir_all(node.join("raft")).unwrap();
            // One audit device for the cluster: its settings are replicated, and a node whose
            // configuration differs refuses to become active.
            let audit_log = dir.join("audit.log");
            let join = if i == 0 {
                String::new()
            } else {
                format!("  retry_join {{\n    leader_api_addr = \"{leader_api}\"\n  }}\n")
            };
            // performance_multiplier 1: production's election timing, not the default's 5x.
            let config = format!(
                "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"n{i}\"\n  performance_multiplier = 1\n{join}}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
                 api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"https://127.0.0.1:{cluster}\"\n\
                 audit \"file\" \"log\" {{\n  options {{\n    file_path = \"{audit}\"\n  }}\n}}\n",
                raft = node.join("raft").display(),
                cluster = port + 1,
                audit = audit_log.display(),
            );
            std::fs::write(node.join("config.hcl"), config).unwrap();
            let log = std::fs::File::create(node.join("bao.log")).unwrap();
            let server = with_pdeathsig("KILL", bao_binary())
                .arg("server")
                .arg(format!("-config={}", node.join("config.hcl").display()))
                .env("HOME", &node)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.push(Bao {
                port: *port,
                addr: format!("http://127.0.0.1:{port}"),
                audit_log,
                token: String::new(),
                server,
            });
        }
        let first = &nodes[0];
        wait_for(first, "listening", |status| status.is_some());
        let init = serde_json::json!({"secret_shares": 1, "secret_threshold": 1});
        let (_, answer) = first.request("PUT", "/v1/sys/init", None, Some(&init)).unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
        let key = answer["keys_base64"][0].as_str().unwrap_or_else(|| panic!("init: {answer}")).to_owned();
        let token = answer["root_token"].as_str().unwrap().to_owned();
        for node in &mut nodes {
            node.token.clone_from(&token);
        }
        let unseal = serde_json::json!({ "key": key });
        nodes[0].request("PUT", "/v1/sys/unseal", None, Some(&unseal)).unwrap();
        wait_for(&nodes[0], "active", |status| status == Some(200));
        // New voters are promoted once stable: a second, not the default ten.
        nodes[0].api(
            "POST",
            "/v1/sys/storage/raft/autopilot/configuration",
            Some(&serde_json::json!({"server_stabilization_time": "1s", "cleanup_dead_servers": false})),
        );
        for node in &nodes[1..] {
            // A standby joins (retry_join) once it can be unsealed, which it can once up.
            wait_for(node, "listening", |status| status.is_some());
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                node.request("PUT", "/v1/sys/unseal", None, Some(&unseal));
                if node.request("GET", "/v1/sys/health", None, None).is_some_and(|(s, _)| s == 429) {
                    break;
                }
                assert!(Instant::now() < deadline, "node {} did not join", node.addr);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let cluster = Self { nodes: nodes.into_iter().map(Some).collect() };
        cluster.wait_for_voters(3);
        cluster
    }

    /// The index of the active node, as a live node reports it.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            for node in self.nodes.iter().flatten() {
                if let Some((200, text)) = node.request("GET", "/v1/sys/leader", None, None) {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    let addr = v["leader_address"].as_str().unwrap_or_default();
                    if let Some(i) = self.nodes.iter().position(|n| n.as_ref().is_some_and(|n| n.addr == addr)) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The active node.
    pub fn active(&self) -> &Bao {
        self.nodes[self.leader()].as_ref().unwrap()
    }

    /// A live node that is not the active one.
    pub fn standby(&self) -> (usize, &Bao) {
        let leader = self.leader();
        self.nodes.iter().enumerate().find_map(|(i, n)| n.as_ref().filter(|_| i != leader).map(|n| (i, n))).unwrap()
    }

    /// Kills node `i` (SIGKILL: a crash, no step-down).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.nodes[i].take() {
            let _ = node.server.kill();
            let _ = node.server.wait();
        }
    }

    /// Waits until every live node has applied what the active node has committed: a
    /// standby answers reads from its own copy (OpenBao's read-enabled standbys), so a secret
    /// id created a moment ago on the active node is unknown there until then.
    pub fn settle(&self) {
        let index = |node: &Bao, field: &str| {
            let (_, text) = node.request("GET", "/v1/sys/leader", None, None).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default()[field].as_u64().unwrap_or(0)
        };
        let committed = index(self.active(), "raft_committed_index");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.nodes.iter().flatten().any(|n| index(n, "raft_applied_index") < committed) {
            assert!(Instant::now() < deadline, "the standbys never caught up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_voters(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let config = self.active().api("GET", "/v1/sys/storage/raft/configuration", None);
            let voters = config["data"]["config"]["servers"]
                .as_array()
                .map_or(0, |servers| servers.iter().filter(|s| s["voter"] == true).count());
            if voters >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{voters} voters: {config}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits until `node`'s health status (`None`: nothing answers) satisfies `ok`.
fn wait_for(node: &Bao, what: &str, ok: impl Fn(Option<u16>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok(node.request("GET", "/v1/sys/health", None, None).map(|(s, _)| s)) {
        assert!(Instant::now() < deadline, "OpenBao at {} never {what}", node.addr);
        std::thread::sleep(Duration::from_millis(50));
    }
}
