//! The delta's wire format: instructions, varints, and the bounded reader and
//! writer both sides use.
//!
//! A delta is a sequence of instructions that together write exactly one page:
//!
//! ```text
//!   header  = varint(((len - 1) << 2) | kind)        len in 1..=4096, so 1 or 2 bytes
//!   kind 0  ADD        len literal bytes follow
//!   kind 1  COPY_SAME  copy len bytes from the base at (target position + last displacement)
//!   kind 2  COPY       varint(zigzag(displacement)) follows, then as COPY_SAME;
//!                      the displacement becomes the new "last displacement" (starts at 0)
//!   kind 3  FILL       one byte follows, repeated len times
//! ```
//!
//! The displacement is `base offset - target position`: pages that are similar at the
//! same offsets (the common case in Difference Engine) copy with displacement 0 and
//! need no address at all.

use foldswap_mem::Error;

/// Literal bytes follow.
pub(crate) const KIND_ADD: u32 = 0;
/// Copy from the base at the previous displacement.
pub(crate) const KIND_COPY_SAME: u32 = 1;
/// Copy from the base at a new displacement (zigzag varint follows).
pub(crate) const KIND_COPY: u32 = 2;
/// One byte follows, repeated.
pub(crate) const KIND_FILL: u32 = 3;

/// Bits of the header that hold the kind.
const KIND_BITS: u32 = 2;
/// A header or displacement never needs more than two varint bytes (14 bits).
const MAX_VARINT_BYTES: usize = 2;

/// The header of an instruction writing `len` (1..=4096) bytes.
pub(crate) fn header(kind: u32, len: usize) -> u32 {
    ((len.saturating_sub(1) as u32) << KIND_BITS) | kind
}

/// Split a header into (kind, len).
pub(crate) fn split_header(header: u32) -> (u32, usize) {
    (header & 3, (header >> KIND_BITS) as usize + 1)
}

/// Signed displacement to an unsigned varint value.
pub(crate) fn zigzag(displacement: isize) -> u32 {
    ((displacement << 1) ^ (displacement >> (isize::BITS - 1))) as u32
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(value: u32) -> isize {
    ((value >> 1) as isize) ^ -((value & 1) as isize)
}

/// Appends to a caller's buffer; running out of room is the encoder's signal to
/// give up ([`Error::Incompressible`]).
pub(crate) struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut [u8]) -> Self {
        Writer { out, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn byte(&mut self, byte: u8) -> Result<(), Error> {
        let slot = self.out.get_mut(self.len).ok_or(Error::Incompressible)?;
        *slot = byte;
        self.len += 1;
        Ok(())
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.len + bytes.len();
        let dst = self
            .out
            .get_mut(self.len..end)
            .ok_or(Error::Incompressible)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// LEB128, at most two bytes for the values the format uses (< 2^14).
    pub(crate) fn varint(&mut self, value: u32) -> Result<(), Error> {
        if value < 0x80 {
            self.byte(value as u8)
        } else {
            self.byte((value as u8 & 0x7f) | 0x80)?;
            self.byte((value >> 7) as u8)
        }
    }
}

/// Reads a delta; every step is bounds-checked and any malformed input is
/// [`Error::Corrupt`].
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    pub(crate) fn byte(&mut self) -> Result<u8, Error> {
        let byte = *self.bytes.get(self.at).ok_or(Error::Corrupt)?;
        self.at += 1;
        Ok(byte)
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(len).ok_or(Error::Corrupt)?;
        let slice = self.bytes.get(self.at..end).ok_or(Error::Corrupt)?;
        self.at = end;
        Ok(slice)
    }

    /// A LEB128 value of at most [`MAX_VARINT_BYTES`] bytes.
    pub(crate) fn varint(&mut self) -> Result<u32, Error> {
        let mut value = 0u32;
        for shift in 0..MAX_VARINT_BYTES as u32 {
            let byte = self.byte()?;
            value |= u32::from(byte & 0x7f) << (7 * shift);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_every_displacement() {
        for d in -4096isize..=4096 {
            assert_eq!(unzigzag(zigzag(d)), d);
            assert!(zigzag(d) < 1 << 14, "{d} needs more than two varint bytes");
        }
    }

    #[test]
    fn varint_round_trips_and_rejects_long_encodings() {
        let mut buf = [0u8; 4];
        for value in [0u32, 1, 0x7f, 0x80, 0x3fff] {
            let mut w = Writer::new(&mut buf);
            w.varint(value).unwrap();
            let n = w.len();
            assert_eq!(Reader::new(&buf[..n]).varint(), Ok(value));
        }
        assert_eq!(
            Reader::new(&[0x80, 0x80, 0x01]).varint(),
            Err(Error::Corrupt)
        );
        assert_eq!(Reader::new(&[0x80]).varint(), Err(Error::Corrupt));
    }

    #[test]
    fn writer_reports_incompressible_when_full() {
        let mut buf = [0u8; 1];
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.varint(0x100), Err(Error::Incompressible));
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.bytes(&[1, 2]), Err(Error::Incompressible));
    }

    #[test]
    fn headers_split_back() {
        for kind in 0..4 {
            for len in [1usize, 2, 4095, 4096] {
                assert_eq!(split_header(header(kind, len)), (kind, len));
            }
        }
    }
}
