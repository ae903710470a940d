//! The private runtime directory for the files libpq reads (the CA bundle now; client keys and
//! `.pgpass` later). `$RUNTIME_DIRECTORY` (systemd), else `$XDG_RUNTIME_DIR`, else `/dev/shm`,
//! else the temp dir; inside it, a fresh 0700 directory of our own. A base directory that
//! another user could write to without the sticky bit, or that another user owns, is refused.
//! Files are created with `O_EXCL` (which also refuses a planted symlink) and explicit modes.
//!
//! The files outlive the launcher (nothing of it runs after exec): under systemd,
//! `RuntimeDirectory=` removes them when the service stops; elsewhere they sit in tmpfs.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Exit, ResultExt};
use crate::plan::ParentEnv;

/// Our own directory for this launch.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Picks the base (`explicit`, else the environment's) and creates our directory in it.
    pub fn create(env: &ParentEnv, explicit: Option<&Path>) -> Result<Self, Error> {
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
        let seed = std::collections::hash_map::RandomState::new();
        for attempt in 0u32..16 {
            let tag =
                std::hash::BuildHasher::hash_one(&seed, (std::process::id(), attempt, std::time::SystemTime::now()));
            let path = base.join(format!("launcher-{}-{tag:016x}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
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

    /// Removes the directory and what is in it (used when nothing will be exec'd).
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.path);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_dir_and_refuses_unsafe_bases() {
        let scratch = std::env::temp_dir().join(format!("launcher-mat-test-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = ParentEnv::from_pairs([("RUNTIME_DIRECTORY", scratch.as_os_str())]);
        let dir = RuntimeDir::create(&env, None).unwrap();
        assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
        let f = dir.write("root.crt", b"x", 0o644).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o644);
        assert!(dir.write("root.crt", b"y", 0o644).is_err(), "never overwrites");
        dir.remove();

        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = RuntimeDir::create(&env, None).unwrap_err();
        assert_eq!(e.exit(), Exit::CantCreate);
        assert!(e.to_string().contains("without the sticky bit"), "{e}");
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o1777)).unwrap();
        RuntimeDir::create(&env, None).unwrap().remove();
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
