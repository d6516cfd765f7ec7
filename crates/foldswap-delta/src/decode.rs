//! Decoding a delta against its base: checked and bounded.
//!
//! Every length, offset and displacement is checked before use; the output is
//! written only inside `out`; the instructions must cover exactly one page and the
//! delta must end exactly there. Anything else is [`Error::Corrupt`].

use foldswap_mem::{Error, PAGE_SIZE};

use crate::format::{
    KIND_ADD, KIND_COPY, KIND_COPY_SAME, KIND_FILL, Reader, split_header, unzigzag,
};

/// Rebuild the page `delta` describes against `base` into `out`.
///
/// Any malformed, truncated, overlong or hostile `delta` gives [`Error::Corrupt`];
/// `out` may then hold a partial page. Never panics, never writes outside `out`.
///
/// ```
/// use foldswap_delta::decode;
/// use foldswap_mem::Error;
/// let base = [1u8; 4096];
/// let mut out = [0u8; 4096];
/// // One COPY_SAME of 4096 bytes at displacement 0: the base itself.
/// decode(&base, &[0xfd, 0x7f], &mut out).unwrap();
/// assert_eq!(out, base);
/// // Only 4095 bytes: the delta does not cover the page.
/// assert_eq!(decode(&base, &[0xf9, 0x7f], &mut out), Err(Error::Corrupt));
/// ```
pub fn decode(
    base: &[u8; PAGE_SIZE],
    delta: &[u8],
    out: &mut [u8; PAGE_SIZE],
) -> Result<(), Error> {
    let mut reader = Reader::new(delta);
    let mut displacement = 0isize;
    let mut at = 0;
    while at < PAGE_SIZE {
        let (kind, len) = split_header(reader.varint()?);
        let end = at + len;
        let dst = out.get_mut(at..end).ok_or(Error::Corrupt)?;
        match kind {
            KIND_ADD => dst.copy_from_slice(reader.take(len)?),
            KIND_FILL => dst.fill(reader.byte()?),
            KIND_COPY | KIND_COPY_SAME => {
                if kind == KIND_COPY {
                    displacement = unzigzag(reader.varint()?);
                }
                dst.copy_from_slice(base_span(base, at, displacement, len)?);
            }
            _ => return Err(Error::Corrupt),
        }
        at = end;
    }
    if reader.is_empty() {
        Ok(())
    } else {
        Err(Error::Corrupt)
    }
}

/// The `len` base bytes a COPY at target offset `at` reads, if inside the base.
fn base_span(
    base: &[u8; PAGE_SIZE],
    at: usize,
    displacement: isize,
    len: usize,
) -> Result<&[u8], Error> {
    let from = usize::try_from(at as isize + displacement).map_err(|_| Error::Corrupt)?;
    base.get(from..from + len).ok_or(Error::Corrupt)
}
