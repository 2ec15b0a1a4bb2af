//! Byte-level access to stored artifacts that skips the digest check: for forensic tools and
//! for the tests that prove a damaged artifact is refused on every path that reads it.

use std::path::PathBuf;

use super::Storage;
use crate::CoordinatorError;
use crate::artifacts::check_digest;

impl Storage {
    fn artifact_path(&self, digest: &str) -> Result<PathBuf, CoordinatorError> {
        check_digest(digest)?;
        Ok(self
            .data_dir
            .join("artifacts")
            .join(format!("{digest}.bin")))
    }

    fn io(path: PathBuf) -> impl FnOnce(std::io::Error) -> CoordinatorError {
        move |source| CoordinatorError::Artifact { path, source }
    }

    /// The stored bytes under `digest`, as they are (not verified).
    pub fn raw_artifact(&self, digest: &str) -> Result<Vec<u8>, CoordinatorError> {
        match &self.pool {
            None => {
                let path = self.artifact_path(digest)?;
                std::fs::read(&path).map_err(Self::io(path))
            }
            Some(pool) => {
                let rows = pool.with_client(|c| {
                    c.query("SELECT bytes FROM blobs WHERE digest = $1", &[&digest])
                })?;
                rows.first()
                    .map(|r| r.get(0))
                    .ok_or_else(|| CoordinatorError::MissingArtifact(digest.to_string()))
            }
        }
    }

    /// Replaces the bytes stored under `digest` (which then no longer match it).
    pub fn overwrite_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), CoordinatorError> {
        match &self.pool {
            None => {
                let path = self.artifact_path(digest)?;
                std::fs::write(&path, bytes).map_err(Self::io(path))
            }
            Some(pool) => pool
                .with_client(|c| {
                    c.execute(
                        "UPDATE blobs SET bytes = $2 WHERE digest = $1",
                        &[&digest, &bytes],
                    )
                })
                .map(drop),
        }
    }

    /// Deletes the artifact under `digest`.
    pub fn remove_artifact(&self, digest: &str) -> Result<(), CoordinatorError> {
        match &self.pool {
            None => {
                let path = self.artifact_path(digest)?;
                std::fs::remove_file(&path).map_err(Self::io(path))
            }
            Some(pool) => pool
                .with_client(|c| c.execute("DELETE FROM blobs WHERE digest = $1", &[&digest]))
                .map(drop),
        }
    }
}
