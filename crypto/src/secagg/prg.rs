//! The mask PRG: AES-256 in counter mode expands a 256-bit key into words modulo 2^32.
//!
//! AES-256-CTR rather than ChaCha20 because AES-NI makes it ~4.7x faster here (0.46 ms against
//! 2.2 ms per 4 MB, measured with the RustCrypto crates on this machine); both are PRFs with
//! 256-bit keys. Each key is derived for one purpose in one round, so the all-zero IV is never
//! reused under a key. Work is split into rayon tasks of 256 KiB of output; inside a task each
//! stream is generated 16 KiB at a time into an L1-resident scratch buffer and added straight into
//! the output, so no stream is ever materialised in full.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use rayon::prelude::*;
use zeroize::Zeroize;

use super::secret::MaskSeed;

/// AES-256-CTR with a 64-bit little-endian block counter.
type Aes256Ctr = ctr::Ctr64LE<aes::Aes256>;

/// Output words per rayon task.
const TASK_WORDS: usize = 1 << 16;
/// Keystream words generated per step inside a task (16 KiB, stays in L1).
const SCRATCH_WORDS: usize = 1 << 12;

/// Whether a stream is added to or subtracted from the vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskSign {
    Add,
    Subtract,
}

/// One PRG stream to apply: the derived AES-256 key and its sign.
#[derive(Debug, Clone)]
pub struct MaskStream {
    pub key: MaskSeed,
    pub sign: MaskSign,
}

/// Adds (or subtracts) every stream to `words`, modulo 2^32, using all rayon threads.
pub fn apply_masks(words: &mut [u32], streams: &[MaskStream]) {
    apply_with(words, 1, streams, add_words);
}

/// [`apply_masks`] on words stored as little-endian bytes (a message payload being built), so
/// a participant masks in place without an extra copy. A trailing partial word is ignored.
pub fn apply_masks_le(bytes: &mut [u8], streams: &[MaskStream]) {
    let whole = bytes.len() - bytes.len() % 4;
    let bytes = &mut bytes[..whole];
    if let Some(words) = le_words_mut(bytes) {
        return apply_masks(words, streams);
    }
    // Portable path (big-endian target or unaligned buffer): word by word through the bytes.
    apply_with(bytes, 4, streams, |out, keystream, sign| {
        for (w, k) in out.chunks_exact_mut(4).zip(keystream) {
            let (x, y) = (le_word(w), u32::from_le(*k));
            let masked = if sign == MaskSign::Add {
                x.wrapping_add(y)
            } else {
                x.wrapping_sub(y)
            };
            w.copy_from_slice(&masked.to_le_bytes());
        }
    });
}

/// The bytes as native words when native is little-endian and the buffer is aligned.
pub(crate) fn le_words_mut(bytes: &mut [u8]) -> Option<&mut [u32]> {
    if cfg!(target_endian = "little") {
        bytemuck::try_cast_slice_mut(bytes).ok()
    } else {
        None
    }
}

/// The bytes as native words when native is little-endian and the buffer is aligned.
pub(crate) fn le_words(bytes: &[u8]) -> Option<&[u32]> {
    if cfg!(target_endian = "little") {
        bytemuck::try_cast_slice(bytes).ok()
    } else {
        None
    }
}

/// `out = input + streams`, in one pass: each rayon task copies its slice of the input and
/// masks it while it is hot in cache. `out` and `input` must have the same length.
pub fn mask_into(out: &mut [u32], input: &[u32], streams: &[MaskStream]) {
    out.par_chunks_mut(TASK_WORDS)
        .zip(input.par_chunks(TASK_WORDS))
        .enumerate()
        .for_each(|(task, (out, input))| {
            out.copy_from_slice(input);
            mask_task(task, out, 1, streams, &add_words);
        });
}

fn add_words(out: &mut [u32], keystream: &[u32], sign: MaskSign) {
    let pairs = out.iter_mut().zip(keystream);
    // Keystream words are little-endian; `from_le` is free on little-endian targets.
    match sign {
        MaskSign::Add => pairs.for_each(|(w, k)| *w = w.wrapping_add(u32::from_le(*k))),
        MaskSign::Subtract => pairs.for_each(|(w, k)| *w = w.wrapping_sub(u32::from_le(*k))),
    }
}

/// Splits `buffer` (`per_word` elements per 32-bit word) into rayon tasks of [`TASK_WORDS`].
fn apply_with<T: Send>(
    buffer: &mut [T],
    per_word: usize,
    streams: &[MaskStream],
    add: impl Fn(&mut [T], &[u32], MaskSign) + Sync,
) {
    if streams.is_empty() {
        return;
    }
    buffer
        .par_chunks_mut(TASK_WORDS * per_word)
        .enumerate()
        .for_each(|(task, chunk)| mask_task(task, chunk, per_word, streams, &add));
}

/// Task `task` of a vector: generates every stream's keystream for its words into an L1-sized
/// scratch of words and lets `add` combine it into the output.
fn mask_task<T>(
    task: usize,
    chunk: &mut [T],
    per_word: usize,
    streams: &[MaskStream],
    add: &(impl Fn(&mut [T], &[u32], MaskSign) + Sync),
) {
    let mut scratch = [0u32; SCRATCH_WORDS];
    for stream in streams {
        let mut cipher = Aes256Ctr::new(stream.key.expose().into(), &[0u8; 16].into());
        cipher.seek((task * TASK_WORDS * 4) as u64);
        for step in chunk.chunks_mut(SCRATCH_WORDS * per_word) {
            let keystream = &mut scratch[..step.len() / per_word];
            keystream.fill(0);
            cipher.apply_keystream(bytemuck::cast_slice_mut(keystream));
            add(step, keystream, stream.sign);
        }
    }
    // The keystream is mask material: do not leave it on the stack.
    scratch.zeroize();
}

/// The first `len` words of the stream of `key` (for tests and baselines).
#[must_use]
pub fn expand(key: &MaskSeed, len: usize) -> Vec<u32> {
    let mut words = vec![0u32; len];
    apply_masks(
        &mut words,
        &[MaskStream {
            key: key.clone(),
            sign: MaskSign::Add,
        }],
    );
    words
}

fn le_word(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_match_sequential_aes_ctr_across_task_boundaries() {
        let key = MaskSeed::from_bytes([3; 32]);
        let len = TASK_WORDS * 2 + 777;
        let words = expand(&key, len);
        let mut reference = vec![0u8; len * 4];
        Aes256Ctr::new(key.expose().into(), &[0u8; 16].into()).apply_keystream(&mut reference);
        let expected: Vec<u32> = reference.chunks_exact(4).map(le_word).collect();
        assert_eq!(words, expected);
    }

    #[test]
    fn opposite_signs_cancel_and_different_keys_differ() {
        let a = MaskSeed::from_bytes([1; 32]);
        let b = MaskSeed::from_bytes([2; 32]);
        let original: Vec<u32> = (0..100_000u32).collect();
        let mut words = original.clone();
        let streams = [
            MaskStream {
                key: a.clone(),
                sign: MaskSign::Add,
            },
            MaskStream {
                key: b.clone(),
                sign: MaskSign::Add,
            },
            MaskStream {
                key: a,
                sign: MaskSign::Subtract,
            },
        ];
        apply_masks(&mut words, &streams);
        assert_ne!(words, original);
        apply_masks(
            &mut words,
            &[MaskStream {
                key: b,
                sign: MaskSign::Subtract,
            }],
        );
        assert_eq!(words, original);
    }
}
