//! Encoding a page as a delta against a base page.
//!
//! 1. Index the base (on first need): the hash of the 8 bytes at every
//!    [`BASE_STRIDE`]-th offset goes into a table of base offsets held in the
//!    caller's [`EncodeScratch`].
//! 2. Walk the target. At each position first try the previous displacement (pages
//!    similar at the same offsets match there without a lookup), then a run of one
//!    byte (FILL), then the table; when the table's offset gives a short match,
//!    displacements near the previous one ([`nearer_match`]: an edit shifts what
//!    follows by a little). A candidate counts only after its 8 bytes compare
//!    equal; it is then extended backward over pending literals and forward a word
//!    at a time.
//! 3. Where nothing matches, the byte waits as a literal for the next ADD. After
//!    2^[`SKIP_TRIGGER`] misses in a row the walk steps faster (like lz4), so an
//!    unrelated page costs little before it fails; the steps stay odd so that they
//!    never fall into step with the index's stride ([`skip_after`]).
//!
//! Every write goes through a [`Writer`] bounded by the caller's `out`: the moment the
//! delta would not fit, encoding stops with [`Error::Incompressible`].

use foldswap_mem::{Error, PAGE_SIZE, Page};

use crate::format::{KIND_ADD, KIND_COPY, KIND_COPY_SAME, KIND_FILL, Writer, header, zigzag};

/// log2 of the slots in the base index. 2^11 slots of `u16` = 4 KiB: the scratch
/// is exactly one page.
pub const TABLE_BITS: u32 = 11;
/// Slots in the base index.
pub const TABLE_SLOTS: usize = 1 << TABLE_BITS;
/// Every `BASE_STRIDE`-th base offset is indexed. A match of at least
/// `KEY_BYTES + BASE_STRIDE - 1` bytes always contains an indexed offset.
pub const BASE_STRIDE: usize = 8;
/// Bytes hashed per key, and the shortest match found through the index.
const KEY_BYTES: usize = 8;
/// Misses in a row (as a power of two) before the walk starts stepping faster.
pub const SKIP_TRIGGER: u32 = 5;
/// How far (in bytes, either way) [`nearer_match`] looks from the previous
/// displacement: inserts and deletes of up to this many bytes are found without
/// the index.
const SEAM_WINDOW: isize = 64;
/// A match this long is taken without looking further away ([`nearer_match`]).
const SEAM_GOOD_ENOUGH: usize = 64;
/// The shortest run of one byte worth a FILL instead of literals.
const MIN_FILL: usize = 8;
/// The largest delta [`encode`] can produce: an `out` this long never fails
/// (all literals: one ADD of 4096 bytes with a two-byte header; any COPY or FILL,
/// at least 8 bytes for at most 4, only makes it shorter).
pub const MAX_DELTA_BYTES: usize = PAGE_SIZE + 2;
/// Marks an empty slot.
const EMPTY: u16 = u16::MAX;

/// The encoder's working memory: the hash index of the base, one page in size.
///
/// Keep one per encoding thread (in the kernel: carve it from a provider page with
/// [`EncodeScratch::from_page`]); its contents between calls do not matter.
#[repr(C, align(64))]
pub struct EncodeScratch {
    slots: [u16; TABLE_SLOTS],
}

const _: () = assert!(core::mem::size_of::<EncodeScratch>() == PAGE_SIZE);

impl EncodeScratch {
    /// A fresh scratch (4 KiB: box it or put it in a static rather than on a small stack).
    pub const fn new() -> Self {
        EncodeScratch {
            slots: [EMPTY; TABLE_SLOTS],
        }
    }

    /// Use a page from the host as scratch.
    pub fn from_page(page: &mut Page) -> &mut EncodeScratch {
        let bytes: *mut [u8; PAGE_SIZE] = page.as_bytes_mut();
        // SAFETY: `EncodeScratch` is `repr(C)`, exactly PAGE_SIZE bytes (checked
        // above) of `u16`, for which any bit pattern is valid; a `Page` is 4096
        // bytes aligned to 4096 (more than the 64 required); the returned borrow
        // takes over the unique borrow of `page`.
        unsafe { &mut *bytes.cast::<EncodeScratch>() }
    }

    fn clear(&mut self) {
        self.slots.fill(EMPTY);
    }
}

impl Default for EncodeScratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Encode `target` as a delta against `base` into `out`, returning the delta's length.
///
/// `out.len()` is the limit: pass `&mut buf[..limit]` to give up as soon as the delta
/// would reach `limit + 1` bytes (e.g. the page's compressed size). Fails with
/// [`Error::Incompressible`] then; `out` holds garbage.
///
/// ```
/// use foldswap_delta::{decode, encode, EncodeScratch};
/// let base = [7u8; 4096];
/// let mut target = base;
/// target[100..108].copy_from_slice(b"patched!");
/// let mut scratch = Box::new(EncodeScratch::new());
/// let mut delta = [0u8; 64];
/// let n = encode(&target, &base, &mut scratch, &mut delta).unwrap();
/// assert!(n < 20);
/// let mut page = [0u8; 4096];
/// decode(&base, &delta[..n], &mut page).unwrap();
/// assert_eq!(page, target);
/// // The same page against an unrelated base does not fit in 64 bytes.
/// let other: [u8; 4096] = core::array::from_fn(|i| (i * 131 % 251) as u8);
/// assert!(encode(&target, &other, &mut scratch, &mut delta).is_ok());
/// assert_eq!(encode(&other, &target, &mut scratch, &mut delta),
///            Err(foldswap_mem::Error::Incompressible));
/// ```
pub fn encode(
    target: &[u8; PAGE_SIZE],
    base: &[u8; PAGE_SIZE],
    scratch: &mut EncodeScratch,
    out: &mut [u8],
) -> Result<usize, Error> {
    let mut index = LazyBaseIndex {
        scratch,
        built: false,
    };
    let mut delta = DeltaWriter {
        out: Writer::new(out),
        displacement: 0,
    };
    let mut literals_from = 0;
    let mut at = 0;
    let mut misses = 0u32;
    while at + KEY_BYTES <= PAGE_SIZE {
        let key = load_key(target, at);
        let anchor = match predicted_match(base, at, key, delta.displacement) {
            Some(from) => Some((at, from)),
            None => match fill_run(target, at, key) {
                Some(run) => {
                    let across =
                        match_across_run(&mut index, target, base, at, run, delta.displacement);
                    if across.is_none() {
                        delta.literals(target, literals_from, at)?;
                        delta.fill(key as u8, run)?;
                        literals_from = at + run;
                        at += run;
                        misses = 0;
                        continue;
                    }
                    across
                }
                None => index
                    .find_near(target, base, at, delta.displacement)
                    .map(|from| (at, from)),
            },
        };
        let Some((anchor_at, from)) = anchor else {
            at += skip_after(misses);
            misses += 1;
            continue;
        };
        let (start, base_start) = extend_backward(target, base, literals_from, anchor_at, from);
        let end = anchor_at + common_prefix(target, base, anchor_at, from);
        if start > at {
            // A match found past a run covers only its tail: the run's head is a FILL.
            delta.literals(target, literals_from, at)?;
            delta.fill(key as u8, start - at)?;
        } else {
            delta.literals(target, literals_from, start)?;
        }
        delta.copy(start, base_start, end - start)?;
        literals_from = end;
        at = end;
        misses = 0;
    }
    delta.literals(target, literals_from, PAGE_SIZE)?;
    Ok(delta.out.len())
}

/// The base's hash index, built on first use: a page similar at equal offsets is
/// encoded entirely by the "previous displacement" guess and never needs it.
struct LazyBaseIndex<'a> {
    scratch: &'a mut EncodeScratch,
    built: bool,
}

impl LazyBaseIndex<'_> {
    /// A base offset whose 8 bytes equal the target's at `at`: the indexed one, or,
    /// when that gives a short match, a nearer one ([`nearer_match`]).
    fn find_near(
        &mut self,
        target: &[u8; PAGE_SIZE],
        base: &[u8; PAGE_SIZE],
        at: usize,
        displacement: isize,
    ) -> Option<usize> {
        let key = key_at(target, at)?;
        let found = self.find(base, key)?;
        Some(nearer_match(target, base, at, key, found, displacement))
    }

    /// The indexed base offset whose 8 bytes equal `key`, if any.
    fn find(&mut self, base: &[u8; PAGE_SIZE], key: u64) -> Option<usize> {
        if !self.built {
            index_base(base, self.scratch);
            self.built = true;
        }
        let slot = *self.scratch.slots.get(slot_of(key))?;
        (slot != EMPTY && key_at(base, usize::from(slot)) == Some(key)).then_some(usize::from(slot))
    }
}

/// Hash every `BASE_STRIDE`-th key of the base into the table. The walk goes from
/// the end down so the earliest offset of a repeated key wins: in periodic content
/// (arrays of equal records) a copy from the first repeat runs the longest.
/// Runs of one byte are left out: the target encodes its own runs as FILL, and a
/// copy from an arbitrary zero run elsewhere in the base only breaks the chain of
/// same-displacement copies.
fn index_base(base: &[u8; PAGE_SIZE], scratch: &mut EncodeScratch) {
    scratch.clear();
    let mut next = (PAGE_SIZE - KEY_BYTES) / BASE_STRIDE * BASE_STRIDE + BASE_STRIDE;
    while next >= BASE_STRIDE {
        next -= BASE_STRIDE;
        let key = load_key(base, next);
        if !is_one_byte_repeated(key)
            && let Some(slot) = scratch.slots.get_mut(slot_of(key))
        {
            *slot = next as u16;
        }
    }
}

/// All 8 bytes of `key` are equal.
fn is_one_byte_repeated(key: u64) -> bool {
    key == key.rotate_left(8)
}

/// The base offset at the previous displacement, if its 8 bytes equal `key`.
fn predicted_match(
    base: &[u8; PAGE_SIZE],
    at: usize,
    key: u64,
    displacement: isize,
) -> Option<usize> {
    let from = usize::try_from(at as isize + displacement).ok()?;
    (key_at(base, from) == Some(key)).then_some(from)
}

/// A run of one byte at `at` would be a FILL, but the base may hold the same run
/// inside content the target continues with: then one COPY covers both, and (in
/// sparse content whose keys are mostly runs) it may be the only way to find the
/// copy at all, for the walk skips every key inside the run. Probe the keys that
/// straddle the run's end and return the first match (position, base offset); the
/// caller extends it backward into the run.
fn match_across_run(
    index: &mut LazyBaseIndex<'_>,
    target: &[u8; PAGE_SIZE],
    base: &[u8; PAGE_SIZE],
    at: usize,
    run: usize,
    displacement: isize,
) -> Option<(usize, usize)> {
    let end = at + run;
    let first = (end + 1).saturating_sub(KEY_BYTES).max(at + 1);
    (first..end).find_map(|probe| {
        let key = key_at(target, probe)?;
        predicted_match(base, probe, key, displacement)
            .or_else(|| index.find(base, key))
            .map(|from| (probe, from))
    })
}

/// The index keeps one offset per key, the earliest; in sparse, zero-heavy content
/// a key recurs all over the base and that offset is often the wrong one. When its
/// match is shorter than [`SEAM_GOOD_ENOUGH`], look for the key at displacements
/// within [`SEAM_WINDOW`] of the previous one (an insert or delete shifts what
/// follows by a little) and take the longest match (lengths counted up to
/// `SEAM_GOOD_ENOUGH`), the nearest among equals.
fn nearer_match(
    target: &[u8; PAGE_SIZE],
    base: &[u8; PAGE_SIZE],
    at: usize,
    key: u64,
    found: usize,
    displacement: isize,
) -> usize {
    let found_len = common_prefix_up_to(target, base, at, found, SEAM_GOOD_ENOUGH);
    if found_len >= SEAM_GOOD_ENOUGH {
        return found;
    }
    let centre = at as isize + displacement;
    let lo = (centre - SEAM_WINDOW).clamp(0, PAGE_SIZE as isize) as usize;
    let hi = (centre + SEAM_WINDOW).clamp(0, (PAGE_SIZE - KEY_BYTES) as isize) as usize;
    // (length, distance from the previous displacement, offset): longest, then nearest.
    let mut best = (found_len, usize::MAX, found);
    let Some(window) = base.get(lo..hi + KEY_BYTES) else {
        return found;
    };
    let wanted = key.to_le_bytes();
    for (i, bytes) in window.windows(KEY_BYTES).enumerate() {
        if bytes != wanted {
            continue;
        }
        let from = lo + i;
        let len = common_prefix_up_to(target, base, at, from, SEAM_GOOD_ENOUGH);
        let distance = (from as isize - centre).unsigned_abs();
        if len > best.0 || (len == best.0 && len > found_len && distance < best.1) {
            best = (len, distance, from);
        }
    }
    best.2
}

/// Grow a match at (`at`, `from`) backward while the bytes before agree, but not
/// past `floor` (the first byte not yet emitted). Returns the new starts.
fn extend_backward(
    target: &[u8; PAGE_SIZE],
    base: &[u8; PAGE_SIZE],
    floor: usize,
    mut at: usize,
    mut from: usize,
) -> (usize, usize) {
    while at > floor && from > 0 && target.get(at - 1) == base.get(from - 1) {
        at -= 1;
        from -= 1;
    }
    (at, from)
}

/// Length of the common run of `target[at..]` and `base[from..]`, a word at a time.
fn common_prefix(
    target: &[u8; PAGE_SIZE],
    base: &[u8; PAGE_SIZE],
    at: usize,
    from: usize,
) -> usize {
    common_prefix_up_to(target, base, at, from, PAGE_SIZE)
}

/// [`common_prefix`], but stopping once `limit` bytes (rounded up to a word) are
/// known to agree.
fn common_prefix_up_to(
    target: &[u8; PAGE_SIZE],
    base: &[u8; PAGE_SIZE],
    at: usize,
    from: usize,
    limit: usize,
) -> usize {
    let mut len = 0;
    while len < limit
        && let (Some(a), Some(b)) = (key_at(target, at + len), key_at(base, from + len))
    {
        let diff = a ^ b;
        if diff != 0 {
            return len + (diff.trailing_zeros() / 8) as usize;
        }
        len += KEY_BYTES;
    }
    if len >= limit {
        return len;
    }
    while let (Some(a), Some(b)) = (target.get(at + len), base.get(from + len)) {
        if a != b {
            break;
        }
        len += 1;
    }
    len
}

/// How far the walk steps after `misses` misses in a row: 1, then 3, 5, 7, ...
/// growing every 2^[`SKIP_TRIGGER`] misses. The step stays odd, so coprime with
/// [`BASE_STRIDE`]: eight steps visit every residue modulo the stride, and a match
/// at any displacement is found within `8 * step` bytes of where it begins (an
/// even step could keep landing beside the indexed offsets of periodic content and
/// skip a long match altogether).
fn skip_after(misses: u32) -> usize {
    1 + 2 * (misses >> SKIP_TRIGGER) as usize
}

/// If `key` (the 8 bytes at `at`) is one byte repeated, the length of that run.
fn fill_run(target: &[u8; PAGE_SIZE], at: usize, key: u64) -> Option<usize> {
    if !is_one_byte_repeated(key) {
        return None;
    }
    let byte = key as u8;
    let rest = target.get(at..)?;
    let run = rest.iter().take_while(|&&b| b == byte).count();
    (run >= MIN_FILL).then_some(run)
}

/// The little-endian 8 bytes at `at`, if they are inside the page.
fn key_at(page: &[u8; PAGE_SIZE], at: usize) -> Option<u64> {
    let bytes = page.get(at..)?.first_chunk::<KEY_BYTES>()?;
    Some(u64::from_le_bytes(*bytes))
}

/// [`key_at`] for offsets the caller keeps inside the page (0 otherwise).
fn load_key(page: &[u8; PAGE_SIZE], at: usize) -> u64 {
    key_at(page, at).unwrap_or(0)
}

/// Multiplicative hash of a key to a table slot.
fn slot_of(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - TABLE_BITS)) as usize
}

/// Emits instructions, remembering the last displacement.
struct DeltaWriter<'a> {
    out: Writer<'a>,
    displacement: isize,
}

impl DeltaWriter<'_> {
    /// ADD `target[from..to]` (nothing if empty).
    fn literals(&mut self, target: &[u8; PAGE_SIZE], from: usize, to: usize) -> Result<(), Error> {
        let Some(bytes) = target.get(from..to).filter(|b| !b.is_empty()) else {
            return Ok(());
        };
        self.out.varint(header(KIND_ADD, bytes.len()))?;
        self.out.bytes(bytes)
    }

    /// COPY `len` bytes from base offset `from` to target offset `at`.
    fn copy(&mut self, at: usize, from: usize, len: usize) -> Result<(), Error> {
        let displacement = from as isize - at as isize;
        if displacement == self.displacement {
            return self.out.varint(header(KIND_COPY_SAME, len));
        }
        self.out.varint(header(KIND_COPY, len))?;
        self.out.varint(zigzag(displacement))?;
        self.displacement = displacement;
        Ok(())
    }

    /// FILL `len` bytes with `byte`.
    fn fill(&mut self, byte: u8, len: usize) -> Result<(), Error> {
        self.out.varint(header(KIND_FILL, len))?;
        self.out.byte(byte)
    }
}
