//! Versioned, size-checked, signed frames for every message of the encrypted mode.
//!
//! ```text
//! magic "GFHE" | version u8 | kind u8 | parameter set u16 | body length u64 | body | [signature]
//! ```
//!
//! All integers are little-endian. Signed kinds end with an Ed25519 signature over the BLAKE3
//! digest (derive-key mode, a context string per format version) of everything before it, so a
//! flipped bit anywhere, including the kind and the parameter set, fails verification. Decoders
//! are told the exact size they expect (a ciphertext's size follows from the model length the
//! coordinator already knows) and refuse anything else before parsing, as tfhe-rs's
//! `safe_deserialization` checks size, type, version and parameter conformance.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use rayon::prelude::*;

use super::HeError;
use super::params::PARAMETER_SET_ID;

const MAGIC: &[u8; 4] = b"GFHE";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 16;
const SIGNATURE_LEN: usize = 64;
const SIGNATURE_CONTEXT: &str = "gridfed he v1 frame signature";

/// What a frame carries; part of the signed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FrameKind {
    Committee = 1,
    PublicKeyShare = 2,
    KeyShareFragment = 3,
    Ciphertext = 4,
    PartialDecryption = 5,
    ShareCommitment = 6,
}

impl FrameKind {
    fn name(self) -> &'static str {
        match self {
            Self::Committee => "committee",
            Self::PublicKeyShare => "public key share",
            Self::KeyShareFragment => "key share fragment",
            Self::Ciphertext => "ciphertext",
            Self::PartialDecryption => "partial decryption",
            Self::ShareCommitment => "public key share commitment",
        }
    }

    fn signed(self) -> bool {
        !matches!(self, Self::Committee)
    }
}

/// Total frame size for a body of `body_len` bytes.
pub(crate) fn frame_len(kind: FrameKind, body_len: usize) -> usize {
    HEADER_LEN + body_len + if kind.signed() { SIGNATURE_LEN } else { 0 }
}

/// Builds one frame: header, then the body written through the `put_*` methods.
pub(crate) struct FrameWriter {
    kind: FrameKind,
    bytes: Vec<u8>,
}

impl FrameWriter {
    pub(crate) fn new(kind: FrameKind, body_capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(frame_len(kind, body_capacity));
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.push(kind as u8);
        bytes.extend_from_slice(&PARAMETER_SET_ID.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        Self { kind, bytes }
    }

    pub(crate) fn put_u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn put_u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn put_u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn put_u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn put_bytes(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
    }

    /// Words that are multiples of 2^dropped, stored as their top `64 - dropped` bits.
    pub(crate) fn put_words(&mut self, words: &[u64], dropped_bits: u32) {
        let width = word_width(dropped_bits);
        let start = self.bytes.len();
        self.bytes.resize(start + words.len() * width, 0);
        for (chunk, &word) in self.bytes[start..].chunks_exact_mut(width).zip(words) {
            debug_assert_eq!(word & ((1u64 << dropped_bits) - 1), 0, "unrounded word");
            chunk.copy_from_slice(&(word >> dropped_bits).to_le_bytes()[..width]);
        }
    }

    /// The digest that [`Self::sign`] will sign, without finishing the frame.
    pub(crate) fn content_digest_of_signed(&mut self) -> [u8; 32] {
        self.patch_length();
        signed_digest(&self.bytes)
    }

    /// The digest a signature over the finished frame would cover (see
    /// [`FrameReader::content_digest`]).
    pub(crate) fn content_digest(mut self) -> [u8; 32] {
        self.patch_length();
        signed_digest(&self.bytes)
    }

    fn patch_length(&mut self) {
        let body_len = (self.bytes.len() - HEADER_LEN) as u64;
        self.bytes[8..16].copy_from_slice(&body_len.to_le_bytes());
    }

    /// The finished frame of an unsigned kind.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        debug_assert!(!self.kind.signed());
        self.patch_length();
        self.bytes
    }

    /// The finished frame, signed by `signer`.
    pub(crate) fn sign(mut self, signer: &SigningKey) -> Vec<u8> {
        debug_assert!(self.kind.signed());
        self.patch_length();
        let signature = signer.sign(&signed_digest(&self.bytes));
        self.bytes.extend_from_slice(&signature.to_bytes());
        self.bytes
    }
}

fn signed_digest(bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(SIGNATURE_CONTEXT);
    if bytes.len() >= 1 << 20 {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
    *hasher.finalize().as_bytes()
}

/// Bytes per packed word when `dropped_bits` low bits are zero.
pub(crate) fn word_width(dropped_bits: u32) -> usize {
    ((64 - dropped_bits) / 8) as usize
}

/// Checks a frame's size, header and (for signed kinds) signature, and reads its body.
pub(crate) struct FrameReader<'a> {
    what: &'static str,
    body: &'a [u8],
    position: usize,
    content_digest: Option<[u8; 32]>,
}

impl<'a> FrameReader<'a> {
    /// Opens a signed frame of `kind` from the holder of `key`, whose body must be exactly
    /// `body_len` bytes long.
    pub(crate) fn open(
        frame: &'a [u8],
        kind: FrameKind,
        body_len: usize,
        key: &VerifyingKey,
    ) -> Result<Self, HeError> {
        let mut reader = Self::open_unverified(frame, kind, body_len)?;
        reader.verify(frame, key)?;
        Ok(reader)
    }

    /// Checks size and header; the caller must then call [`Self::verify`] with a key it picks
    /// from the body (e.g. the committee member the body names) before trusting any field.
    pub(crate) fn open_unverified(
        frame: &'a [u8],
        kind: FrameKind,
        body_len: usize,
    ) -> Result<Self, HeError> {
        let what = kind.name();
        let expected = frame_len(kind, body_len);
        if frame.len() != expected {
            return Err(if frame.len() > expected {
                HeError::TooLarge {
                    what,
                    size: frame.len() as u64,
                    limit: expected as u64,
                }
            } else {
                HeError::Malformed {
                    what,
                    reason: "truncated",
                }
            });
        }
        if &frame[..4] != MAGIC {
            return Err(HeError::Malformed {
                what,
                reason: "bad magic",
            });
        }
        let parameter_set = u16::from_le_bytes([frame[6], frame[7]]);
        if frame[4] != VERSION || parameter_set != PARAMETER_SET_ID {
            return Err(HeError::Unsupported {
                version: frame[4],
                parameter_set,
            });
        }
        if frame[5] != kind as u8 {
            return Err(HeError::Malformed {
                what,
                reason: "wrong frame kind",
            });
        }
        let mut declared = [0u8; 8];
        declared.copy_from_slice(&frame[8..16]);
        if u64::from_le_bytes(declared) != body_len as u64 {
            return Err(HeError::Malformed {
                what,
                reason: "body length mismatch",
            });
        }
        Ok(Self {
            what,
            body: &frame[HEADER_LEN..HEADER_LEN + body_len],
            position: 0,
            content_digest: None,
        })
    }

    /// Verifies the signature that ends `frame` (the frame this reader was opened on).
    pub(crate) fn verify(&mut self, frame: &[u8], key: &VerifyingKey) -> Result<(), HeError> {
        let (signed, signature) = frame.split_at(frame.len() - SIGNATURE_LEN);
        let signature = Signature::from_slice(signature)
            .map_err(|_| HeError::BadSignature { what: self.what })?;
        let content = signed_digest(signed);
        key.verify(&content, &signature)
            .map_err(|_| HeError::BadSignature { what: self.what })?;
        self.content_digest = Some(content);
        Ok(())
    }

    /// The digest of the header and body (what the signature covers), once verified: it names
    /// the content independently of who signed it.
    pub(crate) fn content_digest(&self) -> Option<[u8; 32]> {
        self.content_digest
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], HeError> {
        let end = self
            .position
            .checked_add(len)
            .filter(|&end| end <= self.body.len());
        let end = end.ok_or(HeError::Malformed {
            what: self.what,
            reason: "field past the end",
        })?;
        let bytes = &self.body[self.position..end];
        self.position = end;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, HeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, HeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, HeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, HeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn array<const LEN: usize>(&mut self) -> Result<[u8; LEN], HeError> {
        let mut out = [0u8; LEN];
        out.copy_from_slice(self.take(LEN)?);
        Ok(out)
    }

    /// `count` packed words (see [`FrameWriter::put_words`]).
    pub(crate) fn words(&mut self, count: usize, dropped_bits: u32) -> Result<Vec<u64>, HeError> {
        let mut words = vec![0u64; count];
        self.unpack(&mut words, dropped_bits, |word, value| *word = value)?;
        Ok(words)
    }

    /// Adds `out.len()` packed words into `out` (wrapping), without materializing them.
    pub(crate) fn add_words_into(
        &mut self,
        out: &mut [u64],
        dropped_bits: u32,
    ) -> Result<(), HeError> {
        self.unpack(out, dropped_bits, |word, value| {
            *word = word.wrapping_add(value)
        })
    }

    fn unpack(
        &mut self,
        out: &mut [u64],
        dropped_bits: u32,
        apply: impl Fn(&mut u64, u64) + Sync,
    ) -> Result<(), HeError> {
        let width = word_width(dropped_bits);
        let len = out.len().checked_mul(width).ok_or(HeError::Malformed {
            what: self.what,
            reason: "word count overflows",
        })?;
        let bytes = self.take(len)?;
        let keep = if width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width)) - 1
        };
        out.par_chunks_mut(4096)
            .enumerate()
            .for_each(|(chunk, out)| {
                let start = chunk * 4096 * width;
                for (i, word) in out.iter_mut().enumerate() {
                    let at = start + i * width;
                    // Read 8 bytes where they exist (all but the last word or two), else pad.
                    let mut raw = [0u8; 8];
                    let available = (bytes.len() - at).min(8);
                    raw[..available].copy_from_slice(&bytes[at..at + available]);
                    apply(word, (u64::from_le_bytes(raw) & keep) << dropped_bits);
                }
            });
        Ok(())
    }

    /// Fails unless the whole body was read.
    pub(crate) fn finish(self) -> Result<(), HeError> {
        if self.position == self.body.len() {
            Ok(())
        } else {
            Err(HeError::Malformed {
                what: self.what,
                reason: "trailing bytes",
            })
        }
    }

    pub(crate) fn malformed(&self, reason: &'static str) -> HeError {
        HeError::Malformed {
            what: self.what,
            reason,
        }
    }
}

/// BLAKE3 digest (derive-key mode with `context`) of a byte string; large inputs use both cores.
pub(crate) fn digest(context: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    for part in parts {
        if part.len() >= 1 << 20 {
            hasher.update_rayon(part);
        } else {
            hasher.update(part);
        }
    }
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(signer: &SigningKey) -> Vec<u8> {
        let mut writer = FrameWriter::new(FrameKind::Ciphertext, 8 + 3 * 6);
        writer.put_u64(3);
        writer.put_words(&[1 << 16, u64::MAX << 16, 0], 16);
        writer.sign(signer)
    }

    #[test]
    fn a_signed_frame_round_trips_and_any_flipped_bit_is_rejected() {
        let signer = SigningKey::from_bytes(&[5; 32]);
        let bytes = frame(&signer);
        let body_len = 8 + 3 * 6;
        let mut reader = FrameReader::open(
            &bytes,
            FrameKind::Ciphertext,
            body_len,
            &signer.verifying_key(),
        )
        .unwrap();
        assert_eq!(reader.u64().unwrap(), 3);
        assert_eq!(
            reader.words(3, 16).unwrap(),
            vec![1 << 16, u64::MAX << 16, 0]
        );
        reader.finish().unwrap();

        for position in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[position] ^= 0x10;
            let opened = FrameReader::open(
                &tampered,
                FrameKind::Ciphertext,
                body_len,
                &signer.verifying_key(),
            );
            assert!(opened.is_err(), "flip at byte {position} accepted");
        }
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert!(matches!(
            FrameReader::open(&bytes, FrameKind::Ciphertext, body_len, &other),
            Err(HeError::BadSignature { .. })
        ));
    }

    #[test]
    fn wrong_sizes_kinds_and_versions_are_typed_errors() {
        let signer = SigningKey::from_bytes(&[5; 32]);
        let bytes = frame(&signer);
        let key = signer.verifying_key();
        let body_len = 8 + 3 * 6;
        assert!(matches!(
            FrameReader::open(
                &bytes[..bytes.len() - 1],
                FrameKind::Ciphertext,
                body_len,
                &key
            ),
            Err(HeError::Malformed {
                reason: "truncated",
                ..
            })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            FrameReader::open(&longer, FrameKind::Ciphertext, body_len, &key),
            Err(HeError::TooLarge { .. })
        ));
        assert!(matches!(
            FrameReader::open(&bytes, FrameKind::PartialDecryption, body_len, &key),
            Err(HeError::Malformed {
                reason: "wrong frame kind",
                ..
            })
        ));
        let mut version = bytes.clone();
        version[4] = 2;
        assert!(matches!(
            FrameReader::open(&version, FrameKind::Ciphertext, body_len, &key),
            Err(HeError::Unsupported { version: 2, .. })
        ));
        assert!(FrameReader::open_unverified(&[], FrameKind::Committee, 0).is_err());
    }
}
