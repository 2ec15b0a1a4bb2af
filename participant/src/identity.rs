//! The site's Ed25519 identity and request signing.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use ed25519_dalek::{Signer as _, SigningKey};
use proto::auth::{SignedContext, payload_digest, signing_bytes};
use proto::v1::RequestAuth;

use crate::ParticipantError;

/// How far ahead of this site's clock a coordinator's nonce floor may move its counter: 30
/// days (site clocks that are hours or days behind are common on embedded loggers).
pub const MAX_NONCE_CATCH_UP_US: u64 = 30 * 86_400 * 1_000_000;

/// A participant's signing key plus its nonce counter.
pub struct SiteIdentity {
    key: SigningKey,
    last_nonce: Mutex<u64>,
    /// Fault injection: how far this site's clock is off (see [`Self::inject_clock_skew`]).
    clock_skew_us: AtomicI64,
}

impl std::fmt::Debug for SiteIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteIdentity")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl SiteIdentity {
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
            last_nonce: Mutex::new(0),
            clock_skew_us: AtomicI64::new(0),
        }
    }

    /// A fresh random identity.
    pub fn generate() -> Result<Self, ParticipantError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| ParticipantError::Config(format!("OS RNG: {e}")))?;
        Ok(Self::from_secret(secret))
    }

    /// Loads the 32-byte secret at `path`, creating it (mode 0600 on Unix) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, ParticipantError> {
        let io = |source| ParticipantError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    ParticipantError::Config(format!("{} must hold a 32-byte key", path.display()))
                })?;
                Ok(Self::from_secret(secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Self::generate()?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, identity.key.to_bytes()).map_err(io)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                        .map_err(io)?;
                }
                std::fs::rename(&tmp, path).map_err(io)?;
                Ok(identity)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// A strictly increasing nonce: unix microseconds, or one above the last if the clock lags.
    fn next_nonce(&self) -> u64 {
        let now = self.clock_us();
        let mut last = self.last_nonce.lock().unwrap_or_else(|p| p.into_inner());
        *last = now.max(last.saturating_add(1));
        *last
    }

    fn clock_us(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
            .saturating_add_signed(self.clock_skew_us.load(Ordering::Relaxed))
    }

    /// Moves the nonce counter above `floor`, the coordinator's answer to a nonce it refused
    /// as not fresh (`proto::auth::NONCE_FLOOR_METADATA`). Returns false, changing nothing,
    /// for a floor more than [`MAX_NONCE_CATCH_UP_US`] ahead of this site's clock: a clock
    /// that far off needs fixing, and a counter pushed to the end of its range would be stuck.
    pub fn raise_nonce_floor(&self, floor: u64) -> bool {
        if floor > self.clock_us().saturating_add(MAX_NONCE_CATCH_UP_US) {
            return false;
        }
        let mut last = self.last_nonce.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(floor);
        true
    }

    /// Fault injection: this site's clock reads `skew_us` off (negative: behind), as a site
    /// with a wrong or stepped clock does.
    #[doc(hidden)]
    pub fn inject_clock_skew(&self, skew_us: i64) {
        self.clock_skew_us.store(skew_us, Ordering::Relaxed);
    }

    /// Signs `unsigned` (a request with its `auth` unset) for `method`.
    pub fn authorize<M: prost::Message>(
        &self,
        participant_id: &str,
        method: &str,
        federation: &str,
        round: u64,
        unsigned: &M,
    ) -> RequestAuth {
        let nonce = self.next_nonce();
        let ctx = SignedContext {
            method,
            participant_id,
            federation,
            round,
            nonce,
            payload_digest: payload_digest(unsigned),
        };
        let signature = self.key.sign(&signing_bytes(&ctx));
        RequestAuth {
            participant_id: participant_id.to_string(),
            nonce,
            signature: signature.to_bytes().to_vec(),
        }
    }
}
