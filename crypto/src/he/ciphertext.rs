//! Packed RLWE ciphertexts: encryption of a quantized vector, and their wire format.
//!
//! A vector of `L` plaintext words (each below 2^bits) is cut into blocks of N = 2048 slots.
//! Block `k` holds `c1 = a*u + e1` (N words) and `c0 = (b*u + e0 + Delta*m)[..len]` with
//! `Delta = 2^(64 - bits)`, `u` binary and `e0`, `e1` TUniform(17): tfhe's compact public-key
//! encryption, except that the body keeps only as many coefficients as the block has slots.
//! Words are rounded to multiples of 2^16 at encryption (the rounding is in the noise budget), so
//! a full block costs (N + N) * 6 bytes: 12 bytes per slot. Ciphertexts add by wrapping addition
//! of their words.

use std::sync::OnceLock;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rayon::prelude::*;
use zeroize::Zeroize;

use super::HeError;
use super::keys::CollectivePublicKey;
use super::params::{CIPHERTEXT_DROPPED_BITS, POLYNOMIAL_SIZE};
use super::random::NoiseSource;
use super::ring::Ring;
use super::wire::{FrameKind, FrameReader, FrameWriter, word_width};

const HEADER_BODY_LEN: usize = 32 + 1 + 4 + 8;

/// An encrypted vector (fresh, or the sum of `summands` fresh ones).
///
/// Invariant: `masks.len() == blocks(length) * N`, `bodies.len() == length`, every word a
/// multiple of 2^16, `1 <= bits <= 32`.
#[derive(Clone)]
pub struct Ciphertext {
    key: [u8; 32],
    bits: u8,
    summands: u32,
    length: u64,
    masks: Vec<u64>,
    bodies: Vec<u64>,
    /// Digest of the canonical encoding, computed at most once (reset by every change).
    digest: OnceLock<[u8; 32]>,
}

impl PartialEq for Ciphertext {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.bits, self.summands, self.length)
            == (other.key, other.bits, other.summands, other.length)
            && self.masks == other.masks
            && self.bodies == other.bodies
    }
}

impl Eq for Ciphertext {}

impl std::fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ciphertext")
            .field("length", &self.length)
            .field("summands", &self.summands)
            .finish_non_exhaustive()
    }
}

/// Blocks of N slots needed for `length` slots.
pub(crate) fn block_count(length: usize) -> usize {
    length.div_ceil(POLYNOMIAL_SIZE)
}

/// Rounds every word to the nearest multiple of 2^dropped.
pub(crate) fn round_words(words: &mut [u64], dropped: u32) {
    let half = 1u64 << (dropped - 1);
    let mask = !((1u64 << dropped) - 1);
    words
        .iter_mut()
        .for_each(|x| *x = x.wrapping_add(half) & mask);
}

impl CollectivePublicKey {
    /// Encrypts plaintext words (each below 2^bits of the plan), both cores, one block per task.
    pub fn encrypt(&self, words: &[u32], noise: &mut NoiseSource) -> Result<Ciphertext, HeError> {
        if words.is_empty() {
            return Err(HeError::Empty);
        }
        let bits = self.plan().plaintext_bits().0;
        if let Some(index) = words.iter().position(|&w| bits < 32 && w >> bits != 0) {
            return Err(HeError::WordOutOfRange {
                index,
                word: words[index],
                bits,
            });
        }
        let delta_log2 = 64 - bits;
        let blocks = block_count(words.len());
        let mut masks = vec![0u64; blocks * POLYNOMIAL_SIZE];
        let mut bodies = vec![0u64; words.len()];
        let sources = noise.split(blocks);
        let ring = Ring::get();
        let [a_spectrum, b_spectrum] = self.spectra();
        masks
            .par_chunks_mut(POLYNOMIAL_SIZE)
            .zip(bodies.par_chunks_mut(POLYNOMIAL_SIZE))
            .zip(words.par_chunks(POLYNOMIAL_SIZE))
            .zip(sources)
            .for_each(|(((mask, body), plain), mut source)| {
                let mut u = vec![0u64; POLYNOMIAL_SIZE];
                source.fill_binary(&mut u);
                let u_spectrum = ring.forward(&u);
                u.zeroize();
                ring.multiply(&u_spectrum, a_spectrum, mask);
                source.add_tuniform(mask);
                let mut full_body = vec![0u64; POLYNOMIAL_SIZE];
                ring.multiply_consuming(u_spectrum, b_spectrum, &mut full_body);
                body.copy_from_slice(&full_body[..body.len()]);
                source.add_tuniform(body);
                for (slot, &word) in body.iter_mut().zip(plain) {
                    *slot = slot.wrapping_add(u64::from(word) << delta_log2);
                }
                round_words(mask, CIPHERTEXT_DROPPED_BITS);
                round_words(body, CIPHERTEXT_DROPPED_BITS);
            });
        Ok(Ciphertext {
            key: self.id(),
            bits: bits as u8,
            summands: 1,
            length: words.len() as u64,
            masks,
            bodies,
            digest: OnceLock::new(),
        })
    }
}

impl Ciphertext {
    /// Number of plaintext slots.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// How many fresh ciphertexts this one is the sum of.
    #[must_use]
    pub fn summands(&self) -> u32 {
        self.summands
    }

    /// Identifier of the collective key it is encrypted under.
    #[must_use]
    pub fn key_id(&self) -> [u8; 32] {
        self.key
    }

    /// Size of the signed wire frame for a vector of `length` slots.
    #[must_use]
    pub fn frame_len(length: usize) -> usize {
        super::wire::frame_len(FrameKind::Ciphertext, body_len(length))
    }

    pub(crate) fn bits(&self) -> u32 {
        u32::from(self.bits)
    }

    pub(crate) fn masks(&self) -> &[u64] {
        &self.masks
    }

    pub(crate) fn bodies(&self) -> &[u64] {
        &self.bodies
    }

    /// An all-zero ciphertext of `summands = 0` to accumulate into.
    pub(crate) fn zero(key: [u8; 32], bits: u32, length: usize) -> Self {
        Self {
            key,
            bits: bits as u8,
            summands: 0,
            length: length as u64,
            masks: vec![0; block_count(length) * POLYNOMIAL_SIZE],
            bodies: vec![0; length],
            digest: OnceLock::new(),
        }
    }

    /// Adds `others` into `self` block by block (both cores; each block of the sum stays in
    /// cache while every addend's block streams through). Shape checks are the caller's.
    pub(crate) fn accumulate(&mut self, others: &[&Ciphertext]) {
        self.masks
            .par_chunks_mut(POLYNOMIAL_SIZE)
            .enumerate()
            .for_each(|(block, sum)| {
                let range = block * POLYNOMIAL_SIZE..(block + 1) * POLYNOMIAL_SIZE;
                for other in others {
                    add_assign(sum, &other.masks[range.clone()]);
                }
            });
        self.bodies
            .par_chunks_mut(POLYNOMIAL_SIZE)
            .enumerate()
            .for_each(|(block, sum)| {
                let start = block * POLYNOMIAL_SIZE;
                for other in others {
                    add_assign(sum, &other.bodies[start..start + sum.len()]);
                }
            });
        let added: u32 = others.iter().map(|c| c.summands).sum();
        self.summands += added;
        self.digest = OnceLock::new();
    }

    /// Verifies a fresh ciphertext frame signed by `sender` and adds it into `self` while
    /// decoding, so a coordinator never holds more than the running sum. Nothing is added unless
    /// the whole frame checks out (signature, key, plaintext bits, one summand, length).
    pub(crate) fn accumulate_frame(
        &mut self,
        frame: &[u8],
        sender: &VerifyingKey,
    ) -> Result<(), HeError> {
        let mut reader =
            FrameReader::open(frame, FrameKind::Ciphertext, body_len(self.len()), sender)?;
        if reader.array::<32>()? != self.key {
            return Err(HeError::WrongBinding {
                what: "ciphertext",
                binding: "collective key",
            });
        }
        if reader.u8()? != self.bits {
            return Err(reader.malformed("plaintext bits differ from the plan"));
        }
        if reader.u32()? != 1 {
            return Err(HeError::WrongBinding {
                what: "ciphertext",
                binding: "fresh update (it is already a sum)",
            });
        }
        if reader.u64()? != self.length {
            return Err(reader.malformed("declared length differs from the frame size"));
        }
        // The frame size was checked against the expected length, so these cannot fail midway.
        reader.add_words_into(&mut self.masks, CIPHERTEXT_DROPPED_BITS)?;
        reader.add_words_into(&mut self.bodies, CIPHERTEXT_DROPPED_BITS)?;
        reader.finish()?;
        self.summands += 1;
        self.digest = OnceLock::new();
        Ok(())
    }

    /// The signed wire frame.
    #[must_use]
    pub fn seal(&self, signer: &SigningKey) -> Vec<u8> {
        self.writer().sign(signer)
    }

    fn writer(&self) -> FrameWriter {
        let mut writer = FrameWriter::new(FrameKind::Ciphertext, body_len(self.len()));
        writer.put_bytes(&self.key);
        writer.put_u8(self.bits);
        writer.put_u32(self.summands);
        writer.put_u64(self.length);
        writer.put_words(&self.masks, CIPHERTEXT_DROPPED_BITS);
        writer.put_words(&self.bodies, CIPHERTEXT_DROPPED_BITS);
        writer
    }

    /// Digest binding partial decryptions to this exact ciphertext.
    pub(crate) fn digest(&self) -> [u8; 32] {
        *self.digest.get_or_init(|| self.writer().content_digest())
    }

    /// Decodes a frame signed by `sender`, for the collective key `key`, of exactly `length`
    /// slots; everything else is refused before parsing.
    pub fn open(
        frame: &[u8],
        sender: &VerifyingKey,
        key: &CollectivePublicKey,
        length: usize,
    ) -> Result<Self, HeError> {
        if length == 0 {
            return Err(HeError::Empty);
        }
        let mut reader = FrameReader::open(frame, FrameKind::Ciphertext, body_len(length), sender)?;
        let key_id: [u8; 32] = reader.array()?;
        if key_id != key.id() {
            return Err(HeError::WrongBinding {
                what: "ciphertext",
                binding: "collective key",
            });
        }
        let bits = reader.u8()?;
        if u32::from(bits) != key.plan().plaintext_bits().0 {
            return Err(reader.malformed("plaintext bits differ from the plan"));
        }
        let summands = reader.u32()?;
        if summands == 0 || summands > key.plan().max_summands().0 {
            return Err(reader.malformed("summand count outside the plan"));
        }
        if reader.u64()? != length as u64 {
            return Err(reader.malformed("declared length differs from the frame size"));
        }
        let masks = reader.words(
            block_count(length) * POLYNOMIAL_SIZE,
            CIPHERTEXT_DROPPED_BITS,
        )?;
        let bodies = reader.words(length, CIPHERTEXT_DROPPED_BITS)?;
        // Verifying the signature hashed the canonical encoding already: keep that digest.
        let ciphertext_digest = OnceLock::new();
        if let Some(content) = reader.content_digest() {
            let _ = ciphertext_digest.set(content);
        }
        reader.finish()?;
        Ok(Self {
            key: key_id,
            bits,
            summands,
            length: length as u64,
            masks,
            bodies,
            digest: ciphertext_digest,
        })
    }
}

fn add_assign(sum: &mut [u64], addend: &[u64]) {
    sum.iter_mut()
        .zip(addend)
        .for_each(|(s, x)| *s = s.wrapping_add(*x));
}

fn body_len(length: usize) -> usize {
    let width = word_width(CIPHERTEXT_DROPPED_BITS);
    HEADER_BODY_LEN + (block_count(length) * POLYNOMIAL_SIZE + length) * width
}
