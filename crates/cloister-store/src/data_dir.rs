//! The embedded default's data directory: layout, secret files, and the lock that keeps a
//! second server from opening the same directory.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data directory {dir} is in use by another cloister server{holder}. Stop that server, \
         or start this one with a different --data-dir"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("secret file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    InsecureSecret { path: PathBuf, mode: u32 },
    #[error("secret file {path} holds {len} bytes, expected {expected}; restore it from a backup")]
    BadSecret {
        path: PathBuf,
        len: usize,
        expected: usize,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An opened, locked data directory. The lock is held until this value is dropped.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `root` (mode 0700) if needed and takes its exclusive lock. Fails at once, naming
    /// the holder's pid, when another server holds it: two writers would corrupt nothing in
    /// SQLite, but they would disagree about keys and blobs in flight.
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io_err(root))?;
        let lock_path = root.join("cloister.lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                return Err(DataDirError::Locked {
                    dir: root.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        lock.set_len(0).map_err(io_err(&lock_path))?;
        write!(lock, "{}", std::process::id()).map_err(io_err(&lock_path))?;
        Ok(Self {
            root: root.to_owned(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn metadata_db(&self) -> PathBuf {
        self.root.join("metadata.db")
    }

    pub fn blob_root(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Reads the secret `name` (under `keys/`), creating it with `len` random bytes and mode
    /// 0600 on first use. Refuses a secret others can read.
    pub fn secret(&self, name: &str, len: usize) -> Result<Vec<u8>, DataDirError> {
        let dir = self.root.join("keys");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
        let path = dir.join(name);
        if !path.exists() {
            let mut bytes = vec![0u8; len];
            rand::rng().fill_bytes(&mut bytes);
            write_private_file(&path, &bytes)?;
            return Ok(bytes);
        }
        let mode = fs::metadata(&path)
            .map_err(io_err(&path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(DataDirError::InsecureSecret { path, mode });
        }
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        if bytes.len() != len {
            return Err(DataDirError::BadSecret {
                path,
                len: bytes.len(),
                expected: len,
            });
        }
        Ok(bytes)
    }
}

/// Writes `contents` to `path` with mode 0600, atomically (temp file, fsync, rename), so a
/// crash never leaves a truncated key or credential behind.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err(parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another cloister server"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDir::open(dir.path()).unwrap();
    }

    #[test]
    fn secrets_are_created_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(dir.path()).unwrap();
        let a = d.secret("k", 32).unwrap();
        assert_eq!(d.secret("k", 32).unwrap(), a);
        let path = dir.path().join("keys/k");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            d.secret("k", 32),
            Err(DataDirError::InsecureSecret { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            d.secret("k", 16),
            Err(DataDirError::BadSecret { .. })
        ));
    }
}
