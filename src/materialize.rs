//! The private runtime directory for the files libpq reads (the CA bundle now; client keys and
//! `.pgpass` later). `$RUNTIME_DIRECTORY` (systemd), else `$XDG_RUNTIME_DIR`, else `/dev/shm`,
//! else the temp dir; inside it, a fresh 0700 directory of our own. A base directory that
//! another user could write to without the sticky bit, or that another user owns, is refused.
//! Files are created with `O_EXCL` (which also refuses a planted symlink) and explicit modes.
//!
//! The directory is a guard: it goes when dropped (a failure, a signal, `launcher check`, an
//! exec that failed) unless kept. After a successful exec nothing of the launcher runs to
//! remove it, so it is named for the app's process (`launcher-<pid namespace>-<pid>-<random>`:
//! the app keeps the launcher's PID) and the next launch in the same base removes the
//! directories of ours whose process is gone. The PID namespace in the name keeps two containers
//! that share a runtime directory from removing each other's; `launcher env`'s directory
//! (`launcher-env-…`), whose files the user reads after the launcher is gone, is never removed.
//! Under systemd, `RuntimeDirectory=` also removes them when the service stops.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use launcher_core::{SecretBytes, SecretString};

use crate::check::ClientFiles;
use crate::cli::PasswordVia;
use crate::error::{Error, Exit, ResultExt};
use crate::plan::{CaPlan, ParentEnv, Plan};
use crate::target::Target;

/// Our own directory for this launch; removed on drop unless [`RuntimeDir::keep`] is called.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
    kept: bool,
}

/// Who reads the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The app the launcher becomes: the files are needed while its PID lives.
    App,
    /// Whoever uses `launcher env`'s output, after the launcher exits: kept until removed by hand.
    User,
}

impl RuntimeDir {
    /// Picks the base (`explicit`, else the environment's), removes the directories earlier
    /// launches left there for apps that have exited, and creates our directory in it.
    pub fn create(env: &ParentEnv, explicit: Option<&Path>, reader: Reader) -> Result<Self, Error> {
        let explicit = explicit.map(Path::to_path_buf).or_else(|| {
            env.get("RUNTIME_DIRECTORY")
                .and_then(|v| v.split(':').next())
                .or_else(|| env.get("XDG_RUNTIME_DIR"))
                .map(PathBuf::from)
        });
        let base = match explicit {
            Some(base) => base,
            None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        check_base(&base)?;
        let namespace = pid_namespace();
        if let Some(ns) = namespace {
            sweep(&base, ns);
        }
        let owner = match (reader, namespace) {
            (Reader::App, Some(ns)) => format!("{ns}-{}", std::process::id()),
            // Without a PID namespace to name, nothing would ever remove it: the name says so.
            (Reader::App, None) => format!("unswept-{}", std::process::id()),
            (Reader::User, _) => format!("env-{}", std::process::id()),
        };
        let seed = std::collections::hash_map::RandomState::new();
        for attempt in 0u32..16 {
            let tag =
                std::hash::BuildHasher::hash_one(&seed, (std::process::id(), attempt, std::time::SystemTime::now()));
            let path = base.join(format!("launcher-{owner}-{tag:016x}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path, kept: false }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::new(Exit::CantCreate, e)
                        .context(format!("creating a runtime directory in {}", base.display())));
                }
            }
        }
        Err(Error::msg(Exit::CantCreate, format!("could not create a fresh runtime directory in {}", base.display())))
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a new file with `mode`; never overwrites, never follows a symlink.
    pub fn write(&self, name: &str, bytes: &[u8], mode: u32) -> Result<PathBuf, Error> {
        let path = self.path.join(name);
        let context = || format!("writing {}", path.display());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .exit(Exit::CantCreate)
            .map_err(|e| e.context(context()))?;
        // No fsync: the files matter only while this boot's app runs, other processes read them
        // from the page cache, and an fsync on a disk-backed runtime dir cost about a millisecond.
        file.write_all(bytes).exit(Exit::CantCreate).map_err(|e| e.context(context()))?;
        Ok(path)
    }

    /// Leaves the directory in place when the guard goes.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// This process's PID namespace (the inode `/proc/self/ns/pid` names), when `/proc` is the
/// procfs of that namespace (so that `/proc/PID` says whether a PID of ours lives).
fn pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let ns = link.to_str()?.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()?;
    let me = std::fs::read_link("/proc/self").ok()?;
    (me.to_str()? == std::process::id().to_string()).then_some(ns)
}

/// Removes `launcher-<ns>-<pid>-<tag>` directories in `base` that this user owns, made in PID
/// namespace `ns`, whose PID no longer exists: the app they were made for has exited.
fn sweep(base: &Path, ns: u64) {
    let me = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    let prefix = format!("launcher-{ns}-");
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, tag)| tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        // Never through a symlink, never another user's.
        let ours = entry.path().symlink_metadata().is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn check_base(base: &Path) -> Result<(), Error> {
    let meta = std::fs::metadata(base)
        .exit(Exit::CantCreate)
        .map_err(|e| e.context(format!("runtime directory base {}", base.display())))?;
    if !meta.is_dir() {
        return Err(Error::msg(
            Exit::CantCreate,
            format!("runtime directory base {} is not a directory", base.display()),
        ));
    }
    let me = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::msg(
            Exit::CantCreate,
            format!("runtime directory base {} belongs to another user (uid {})", base.display(), meta.uid()),
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(Error::msg(
            Exit::CantCreate,
            format!("runtime directory base {} is writable by everyone without the sticky bit", base.display()),
        ));
    }
    Ok(())
}

/// The files written for libpq (or found: an existing root file is used in place).
#[derive(Debug)]
pub struct Written {
    /// Our directory, when anything was written.
    pub runtime_dir: Option<RuntimeDir>,
    /// The CA bundle.
    pub root: PathBuf,
    /// The `.pgpass` file, with `--password-via passfile`.
    pub passfile: Option<PathBuf>,
    /// The client certificate and key issued.
    pub client: Option<ClientFiles>,
    /// For node-postgres: an inherited NODE_EXTRA_CA_CERTS bundle with the CA appended.
    pub node_extra: Option<PathBuf>,
}

impl Written {
    /// What the app's environment names.
    #[must_use]
    pub fn for_env(&self) -> crate::env::Files<'_> {
        crate::env::Files {
            root: &self.root,
            passfile: self.passfile.as_deref(),
            client: self.client.as_ref(),
            node_extra: self.node_extra.as_deref(),
        }
    }
}

/// The materialize stage: the CA bundle, the `.pgpass` line and the client key written to a
/// fresh runtime directory, each only when needed. A `.pgpass` line libpq could not read back is
/// refused before anything is written; a write that fails part-way (a full disk, a file-size
/// limit) takes the directory with it (the guard's drop), so no fragment of a key is left.
pub fn write(
    plan: &Plan,
    target: &Target,
    ca: Option<SecretBytes>,
    client: Option<(String, SecretString)>,
    reader: Reader,
) -> Result<Written, Error> {
    let passfile_needed = plan.password_via == PasswordVia::Passfile && target.password.is_some();
    // One line per server of the list, each with the password the check sent there.
    let passfile_line = match &target.password {
        Some(_) if passfile_needed => {
            let mut lines = Vec::new();
            for (i, endpoint) in target.endpoints.iter().enumerate() {
                if let Some(password) = target.password_for(i) {
                    if plan.drivers.contains(&crate::drivers::Driver::Asyncpg)
                        && let Some(problem) =
                            crate::drivers::asyncpg::passfile_problem(&endpoint.host, &target.user, password.expose())
                    {
                        return Err(Error::msg(
                            Exit::DataErr,
                            format!("--password-via passfile with --driver asyncpg: {problem}; use --password-via env"),
                        ));
                    }
                    lines.push(crate::libpq::pgpass::line(&endpoint.host, endpoint.port, &target.user, password)?);
                }
            }
            // Sized up front: a growing String would leave copies of the passwords behind.
            let mut joined = String::with_capacity(lines.iter().map(|l| l.expose().len()).sum());
            for line in &lines {
                joined.push_str(line.expose());
            }
            Some(SecretString::new(joined))
        }
        _ => None,
    };
    // Node reads one extra-CA file: an inherited one must stay trusted beside ours.
    let inherited_node_ca = plan
        .drivers
        .contains(&crate::drivers::Driver::NodePostgres)
        .then(|| plan.env.get("NODE_EXTRA_CA_CERTS"))
        .flatten()
        .filter(|p| !crate::tls::chain::is_system(Path::new(p)));
    let runtime_dir =
        if matches!(plan.ca, CaPlan::Fetch(_)) || passfile_needed || client.is_some() || inherited_node_ca.is_some() {
            Some(RuntimeDir::create(&plan.env, plan.runtime_dir.as_deref(), reader)?)
        } else {
            None
        };
    let root = match (&plan.ca, ca, &runtime_dir) {
        (CaPlan::Fetch(_), Some(pem), Some(dir)) => dir.write("root.crt", pem.expose(), 0o644)?,
        (CaPlan::Existing(path), _, _) => path.clone(),
        _ => return Err(Error::msg(Exit::Software, "CA bundle was not fetched")),
    };
    let passfile = match (passfile_line, &runtime_dir) {
        (Some(line), Some(dir)) => Some(dir.write(".pgpass", line.expose().as_bytes(), 0o600)?),
        _ => None,
    };
    let client = match (client, &runtime_dir) {
        (Some((cert, key)), Some(dir)) => Some(ClientFiles {
            cert: dir.write("client.crt", cert.as_bytes(), 0o644)?,
            key: dir.write("client.key", key.expose().as_bytes(), 0o600)?,
            pk8: if plan.drivers.contains(&crate::drivers::Driver::Pgjdbc) {
                Some(dir.write("client.pk8", pkcs8_der(&key)?.expose(), 0o600)?)
            } else {
                None
            },
        }),
        _ => None,
    };
    let node_extra = match (inherited_node_ca, &runtime_dir) {
        (Some(inherited), Some(dir)) => {
            let mut bundle = std::fs::read(inherited)
                .exit(Exit::CantCreate)
                .map_err(|e| e.context(format!("NODE_EXTRA_CA_CERTS: reading {inherited}")))?;
            if !crate::tls::chain::is_system(&root) {
                bundle.push(b'\n');
                bundle.extend(
                    std::fs::read(&root)
                        .exit(Exit::CantCreate)
                        .map_err(|e| e.context(format!("reading {}", root.display())))?,
                );
            }
            Some(dir.write("node-extra-ca.pem", &bundle, 0o644)?)
        }
        _ => None,
    };
    Ok(Written { runtime_dir, root, passfile, client, node_extra })
}

/// pgjdbc reads a client key only as PKCS#8 DER (`sslkey=….pk8`): the issued PEM key, converted.
fn pkcs8_der(pem: &SecretString) -> Result<SecretBytes, Error> {
    let key = openssl::pkey::PKey::private_key_from_pem(pem.expose().as_bytes())
        .and_then(|k| k.private_key_to_pkcs8())
        .map_err(|_| {
            Error::msg(Exit::DataErr, "client certificate: the issued private key is not a PEM key OpenSSL reads")
        })?;
    Ok(SecretBytes::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_dir_and_refuses_unsafe_bases() {
        let scratch = std::env::temp_dir().join(format!("launcher-mat-test-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = ParentEnv::from_pairs([("RUNTIME_DIRECTORY", scratch.as_os_str())]);
        let dir = RuntimeDir::create(&env, None, Reader::App).unwrap();
        assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
        let f = dir.write("root.crt", b"x", 0o644).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o644);
        assert!(dir.write("root.crt", b"y", 0o644).is_err(), "never overwrites");
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists(), "removed with the guard");

        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = RuntimeDir::create(&env, None, Reader::App).unwrap_err();
        assert_eq!(e.exit(), Exit::CantCreate);
        assert!(e.to_string().contains("without the sticky bit"), "{e}");
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o1777)).unwrap();
        drop(RuntimeDir::create(&env, None, Reader::App).unwrap());
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
