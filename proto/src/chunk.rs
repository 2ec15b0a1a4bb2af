//! Streaming large vectors: chunking on the sending side, bounded reassembly on the receiving
//! side.
//!
//! The sender announces the exact byte length and SHA-256 first, then sends [`split`]'s chunks;
//! the receiver refuses an announced length above its cap, grows its buffer only as bytes
//! arrive, refuses any byte beyond the announcement, and hands the data out only after the
//! length and digest match.

use prost::bytes::Bytes;
use sha2::{Digest, Sha256};

/// The data chunks of a streamed vector: consecutive slices of at most
/// [`crate::CHUNK_BYTES`] sharing `data`'s buffer (no copy). Every sender cuts with this.
pub fn split(data: Bytes) -> impl Iterator<Item = Bytes> + Send {
    (0..data.len())
        .step_by(crate::CHUNK_BYTES)
        .map(move |start| data.slice(start..(start + crate::CHUNK_BYTES).min(data.len())))
}

/// Why a streamed vector was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("announced length {announced} bytes exceeds the limit of {limit} bytes")]
    TooLarge { announced: u64, limit: u64 },
    #[error("announced length {announced} bytes but {expected} bytes were expected")]
    UnexpectedLength { announced: u64, expected: u64 },
    #[error("chunk of {len} bytes exceeds the chunk limit of {limit} bytes")]
    ChunkTooLarge { len: usize, limit: usize },
    #[error("stream carried more than the announced {announced} bytes")]
    Overflow { announced: u64 },
    #[error("stream ended after {received} of {announced} bytes")]
    Truncated { received: u64, announced: u64 },
    #[error("SHA-256 of the received bytes does not match the announced digest")]
    DigestMismatch,
    #[error("digest must be 32 bytes, got {0}")]
    BadDigest(usize),
    #[error("f32 vector byte length {0} is not a multiple of 4")]
    Misaligned(usize),
}

/// SHA-256 of a byte string.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Little-endian bytes of an f32 vector (the wire form of weights and plain updates).
pub fn f32_to_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Inverse of [`f32_to_bytes`].
pub fn bytes_to_f32(bytes: &[u8]) -> Result<Vec<f32>, ChunkError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(ChunkError::Misaligned(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Reassembles one streamed vector with its announced length and digest enforced.
pub struct Reassembly {
    announced: u64,
    digest: [u8; 32],
    hasher: Sha256,
    data: Vec<u8>,
}

impl Reassembly {
    /// Starts a reassembly of `announced` bytes, refusing more than `limit`, and, when the
    /// receiver knows it, anything but `expected` bytes.
    pub fn new(
        announced: u64,
        digest: &[u8],
        limit: u64,
        expected: Option<u64>,
    ) -> Result<Self, ChunkError> {
        if announced > limit {
            return Err(ChunkError::TooLarge { announced, limit });
        }
        if let Some(expected) = expected
            && expected != announced
        {
            return Err(ChunkError::UnexpectedLength {
                announced,
                expected,
            });
        }
        let digest: [u8; 32] = digest
            .try_into()
            .map_err(|_| ChunkError::BadDigest(digest.len()))?;
        Ok(Self {
            announced,
            digest,
            hasher: Sha256::new(),
            // Grown as data arrives: what is announced is not yet received, and a client that
            // announces 80 MB and trickles bytes must not make the receiver hold 80 MB.
            data: Vec::with_capacity((announced as usize).min(crate::CHUNK_BYTES)),
        })
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.data.len() as u64
    }

    /// Appends one chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ChunkError> {
        if chunk.len() > crate::CHUNK_BYTES {
            return Err(ChunkError::ChunkTooLarge {
                len: chunk.len(),
                limit: crate::CHUNK_BYTES,
            });
        }
        if self.received() + chunk.len() as u64 > self.announced {
            return Err(ChunkError::Overflow {
                announced: self.announced,
            });
        }
        self.hasher.update(chunk);
        self.data.extend_from_slice(chunk);
        Ok(())
    }

    /// The complete data, once its length and digest match the announcement.
    pub fn finish(self) -> Result<Vec<u8>, ChunkError> {
        if self.received() != self.announced {
            return Err(ChunkError::Truncated {
                received: self.received(),
                announced: self.announced,
            });
        }
        let digest: [u8; 32] = self.hasher.finalize().into();
        if digest != self.digest {
            return Err(ChunkError::DigestMismatch);
        }
        Ok(self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn an_announced_length_is_not_allocated_before_it_arrives() {
        let r = Reassembly::new(80_000_000, &[0; 32], u64::MAX, None).unwrap();
        assert!(r.data.capacity() <= crate::CHUNK_BYTES);
    }

    #[test]
    fn round_trip_in_chunks() {
        let data = payload(3 * crate::CHUNK_BYTES + 17);
        let mut r = Reassembly::new(data.len() as u64, &sha256(&data), u64::MAX, None).unwrap();
        let chunks: Vec<Bytes> = split(Bytes::from(data.clone())).collect();
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c.len() <= crate::CHUNK_BYTES));
        for c in &chunks {
            r.push(c).unwrap();
        }
        assert_eq!(r.finish().unwrap(), data);
    }

    #[test]
    fn refuses_lies_about_length_and_content() {
        let data = payload(100);
        let d = sha256(&data);
        assert_eq!(
            Reassembly::new(101, &d, 100, None).err(),
            Some(ChunkError::TooLarge {
                announced: 101,
                limit: 100
            })
        );
        assert_eq!(
            Reassembly::new(100, &d, 1000, Some(96)).err(),
            Some(ChunkError::UnexpectedLength {
                announced: 100,
                expected: 96
            })
        );
        assert_eq!(
            Reassembly::new(100, &d[..5], 1000, None).err(),
            Some(ChunkError::BadDigest(5))
        );
        let mut r = Reassembly::new(99, &d, 1000, None).unwrap();
        assert_eq!(r.push(&data), Err(ChunkError::Overflow { announced: 99 }));
        let mut r = Reassembly::new(100, &d, 1000, None).unwrap();
        r.push(&data[..50]).unwrap();
        assert_eq!(
            r.finish(),
            Err(ChunkError::Truncated {
                received: 50,
                announced: 100
            })
        );
        let mut tampered = data.clone();
        tampered[7] ^= 1;
        let mut r = Reassembly::new(100, &d, 1000, None).unwrap();
        r.push(&tampered).unwrap();
        assert_eq!(r.finish(), Err(ChunkError::DigestMismatch));
    }

    #[test]
    fn f32_bytes_round_trip_bit_exactly() {
        let v = vec![0.0f32, -1.5, f32::MIN_POSITIVE, 1e30, -0.0];
        let back = bytes_to_f32(&f32_to_bytes(&v)).unwrap();
        assert!(v.iter().zip(&back).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(bytes_to_f32(&[0; 5]), Err(ChunkError::Misaligned(5)));
    }
}
