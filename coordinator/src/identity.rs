//! The coordinator's long-term signing identity (`coordinator.key` in the data directory): it
//! signs protocol messages and model manifests; participants and replicas verify under its
//! public key.

use std::path::Path;

use crate::CoordinatorError;

/// The coordinator's long-term Ed25519 identity, signing its protocol messages.
#[derive(Debug)]
pub struct CoordinatorIdentity {
    key: ed25519_dalek::SigningKey,
}

impl CoordinatorIdentity {
    /// Loads `<dir>/coordinator.key` (32 raw bytes), creating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, CoordinatorError> {
        let path = dir.join("coordinator.key");
        let io = |source| CoordinatorError::Artifact {
            path: path.clone(),
            source,
        };
        let secret: [u8; 32] = match std::fs::read(&path) {
            Ok(bytes) => bytes.as_slice().try_into().map_err(|_| {
                CoordinatorError::Config(format!("{} must hold 32 bytes", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|e| CoordinatorError::Config(format!("OS RNG: {e}")))?;
                let tmp = dir.join(".coordinator.key.tmp");
                std::fs::write(&tmp, secret).map_err(io)?;
                restrict_to_owner(&tmp).map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                secret
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
        })
    }

    pub fn verifying_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signing key (the model registry signs version manifests with it).
    pub fn signing_key(&self) -> ed25519_dalek::SigningKey {
        self.key.clone()
    }
}

/// The key file is readable by its owner only (0600).
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let _ = path;
    Ok(())
}
