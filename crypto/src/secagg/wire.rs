//! The compact binary encoding of protocol messages.
//!
//! Little-endian fixed-width integers, `u32` length prefixes, no padding, no optional fields:
//! every value has exactly one encoding, so decode -> encode reproduces the input bytes. The
//! reader never allocates more than the bytes it was given and reports truncation, unknown tags
//! and trailing bytes as `CryptoError::Malformed`, never panicking.

use crate::CryptoError;

/// Appends encoded values to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn raw(&mut self, value: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(value);
        self
    }

    /// A length-prefixed list; lengths beyond `u32` cannot come from validated round state.
    pub(crate) fn len(&mut self, len: usize) -> &mut Self {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX))
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.len(value.len()).raw(value)
    }

    pub(crate) fn words(&mut self, words: &[u32]) -> &mut Self {
        self.len(words.len());
        if cfg!(target_endian = "little") {
            // Native words are their little-endian encoding: one memcpy.
            self.bytes.extend_from_slice(bytemuck::cast_slice(words));
        } else {
            self.bytes
                .extend(words.iter().flat_map(|w| w.to_le_bytes()));
        }
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads encoded values from a byte slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn raw(&mut self, len: usize) -> Result<&'a [u8], CryptoError> {
        if self.rest.len() < len {
            return Err(CryptoError::Malformed("truncated"));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.raw(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CryptoError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CryptoError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CryptoError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A list length whose elements take at least `min_element_bytes` each: checked against the
    /// remaining input before anyone allocates for it.
    pub(crate) fn len(&mut self, min_element_bytes: usize) -> Result<usize, CryptoError> {
        let len = usize::try_from(self.u32()?).map_err(|_| CryptoError::Malformed("length"))?;
        if len.saturating_mul(min_element_bytes.max(1)) > self.rest.len() {
            return Err(CryptoError::Malformed("length prefix exceeds the message"));
        }
        Ok(len)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CryptoError> {
        let len = self.len(1)?;
        self.raw(len)
    }

    /// The raw little-endian bytes of a word list (decoded lazily by whoever adds them up).
    pub(crate) fn word_bytes(&mut self) -> Result<&'a [u8], CryptoError> {
        let len = self.len(4)?;
        self.raw(len * 4)
    }

    pub(crate) fn finish(self) -> Result<(), CryptoError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CryptoError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_truncation_is_an_error() {
        let mut w = Writer::default();
        w.u8(7)
            .u32(0xDEAD_BEEF)
            .u64(u64::MAX)
            .bytes(b"abc")
            .words(&[1, u32::MAX]);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 0xDEAD_BEEF);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert_eq!(r.word_bytes().unwrap(), &[1, 0, 0, 0, 255, 255, 255, 255]);
        r.finish().unwrap();
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let all = (|| {
                r.u8()?;
                r.u32()?;
                r.u64()?;
                r.bytes()?;
                r.word_bytes().map(|_| ())
            })();
            assert!(all.is_err(), "cut at {cut} must fail");
        }
    }

    #[test]
    fn huge_length_prefixes_are_refused_before_allocation() {
        let bytes = [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3];
        assert!(matches!(
            Reader::new(&bytes).bytes(),
            Err(CryptoError::Malformed(_))
        ));
        assert!(Reader::new(&[1, 2]).finish().is_err());
    }
}
