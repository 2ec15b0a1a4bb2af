//! Content-addressed weight artifacts behind a storage trait.
//!
//! An artifact is a byte string named by its SHA-256. [`LocalArtifacts`] keeps them as files,
//! written to a temporary name, synced, then renamed into place, so a crash leaves either the
//! complete artifact or none; [`crate::storage::PgArtifacts`] keeps them in PostgreSQL. Every
//! read verifies the digest.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::CoordinatorError;

/// Where weight artifacts live.
pub trait ArtifactStore: Send + Sync {
    /// Stores `bytes` atomically and returns their SHA-256 (lowercase hex). A stored copy
    /// that no longer matches its digest is replaced, so putting the original bytes again
    /// repairs a damaged artifact.
    fn put(&self, bytes: &[u8]) -> Result<String, CoordinatorError>;
    /// The bytes stored under `digest`, verified.
    fn get(&self, digest: &str) -> Result<Vec<u8>, CoordinatorError>;
}

/// Artifacts as files `<dir>/<sha256>.bin`.
#[derive(Debug, Clone)]
pub struct LocalArtifacts {
    dir: PathBuf,
}

impl LocalArtifacts {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CoordinatorError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| CoordinatorError::Artifact {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn path_of(&self, digest: &str) -> Result<PathBuf, CoordinatorError> {
        check_digest(digest)?;
        Ok(self.dir.join(format!("{digest}.bin")))
    }
}

/// Refuses anything but 64 hex digits (a digest also names a file: no path tricks).
pub(crate) fn check_digest(digest: &str) -> Result<(), CoordinatorError> {
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CoordinatorError::Invalid(format!(
            "`{digest}` is not a sha256 digest"
        )));
    }
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CoordinatorError + '_ {
    move |source| CoordinatorError::Artifact {
        path: path.to_path_buf(),
        source,
    }
}

impl ArtifactStore for LocalArtifacts {
    fn put(&self, bytes: &[u8]) -> Result<String, CoordinatorError> {
        let digest = hex::encode(proto::chunk::sha256(bytes));
        let path = self.path_of(&digest)?;
        if path.exists() && self.get(&digest).is_ok() {
            return Ok(digest);
        }
        let tmp = self
            .dir
            .join(format!(".{digest}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            // A full disk must not also keep the partial copy: it would hold the space a retry
            // needs.
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        // Make the rename itself durable.
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(digest)
    }

    fn get(&self, digest: &str) -> Result<Vec<u8>, CoordinatorError> {
        let path = self.path_of(digest)?;
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CoordinatorError::MissingArtifact(digest.to_string()),
            _ => io_err(&path)(e),
        })?;
        if hex::encode(proto::chunk::sha256(&bytes)) != digest {
            return Err(CoordinatorError::CorruptArtifact(digest.to_string()));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalArtifacts::open(dir.path()).unwrap();
        let digest = store.put(b"weights").unwrap();
        assert_eq!(store.get(&digest).unwrap(), b"weights");
        assert_eq!(store.put(b"weights").unwrap(), digest);
        fs::write(dir.path().join(format!("{digest}.bin")), b"tampered").unwrap();
        assert!(matches!(
            store.get(&digest),
            Err(CoordinatorError::CorruptArtifact(_))
        ));
        // Putting the original bytes again repairs it.
        assert_eq!(store.put(b"weights").unwrap(), digest);
        assert_eq!(store.get(&digest).unwrap(), b"weights");
        assert!(matches!(
            store.get("../etc/passwd"),
            Err(CoordinatorError::Invalid(_))
        ));
        // No temporary files are left behind.
        let leftovers = fs::read_dir(dir.path()).unwrap().filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        });
        assert_eq!(leftovers.count(), 0);
    }
}
