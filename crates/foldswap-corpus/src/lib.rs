//! # foldswap-corpus — page corpora for tests, benches and the command line
//!
//! A corpus is raw 4096-byte pages back to back, optionally gzip-compressed
//! (`.pages` / `.pages.gz`). This crate reads one with clear, typed errors (a size
//! that is not a multiple of 4096, a truncated gzip stream, an unreadable file, more
//! pages than the reader's bound), and
//! parses the independent reference figures shipped beside the dev corpus, so
//! foldswap's own counts can be checked against them.
//!
//! The dev corpus is part of the repository: `samples/dev-mixed.pages.gz` and its
//! figures `samples/dev-mixed.reference.txt` (see `samples/README.md` for what they
//! are and how the figures were made). [`dev_mixed`] reads them from there; a clone
//! needs nothing outside the repository.
//!
//! This is a std crate: it is never linked into the kernel.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flate2::read::MultiGzDecoder;
use foldswap_mem::PAGE_SIZE;

/// Why a corpus could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The gzip stream ended early or is damaged.
    #[error("{path}: damaged or truncated gzip stream ({source})")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        source: io::Error,
    },
    /// The (decompressed) size is not a whole number of pages.
    #[error("{path}: size {len} bytes is not a multiple of {PAGE_SIZE}")]
    NotPageMultiple {
        /// The file.
        path: PathBuf,
        /// Its (decompressed) length.
        len: usize,
    },
    /// The corpus holds more pages than the reader was allowed to read. Reading
    /// stopped there: the pages past the bound were never read or decompressed.
    #[error("{path}: more than {max_pages} pages (the bound on pages read)")]
    TooManyPages {
        /// The file.
        path: PathBuf,
        /// The bound.
        max_pages: usize,
    },
    /// Memory for the pages could not be allocated.
    #[error("{path}: cannot allocate {bytes} bytes for its pages")]
    OutOfMemory {
        /// The file.
        path: PathBuf,
        /// The buffer size that could not be allocated.
        bytes: usize,
    },
    /// The reference file lacks a field or has a malformed one.
    #[error("reference figures: {0}")]
    Reference(String),
}

/// Pages read from a corpus file, back to back in one buffer.
#[derive(Clone)]
pub struct Corpus {
    bytes: Vec<u8>,
}

impl Corpus {
    /// Wrap page bytes; fails if the length is not a multiple of 4096.
    pub fn from_bytes(bytes: Vec<u8>, origin: &Path) -> Result<Self, CorpusError> {
        if !bytes.len().is_multiple_of(PAGE_SIZE) {
            return Err(CorpusError::NotPageMultiple {
                path: origin.to_path_buf(),
                len: bytes.len(),
            });
        }
        Ok(Corpus { bytes })
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.bytes.len() / PAGE_SIZE
    }

    /// No pages at all.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Page `index`, if it exists.
    pub fn page(&self, index: usize) -> Option<&[u8; PAGE_SIZE]> {
        self.bytes
            .get(index * PAGE_SIZE..(index + 1) * PAGE_SIZE)
            .and_then(|p| p.try_into().ok())
    }

    /// Every page in order.
    pub fn pages(&self) -> impl ExactSizeIterator<Item = &[u8; PAGE_SIZE]> + Clone + '_ {
        self.bytes
            .chunks_exact(PAGE_SIZE)
            .map(|p| <&[u8; PAGE_SIZE]>::try_from(p).unwrap_or(&[0; PAGE_SIZE]))
    }

    /// All page bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl core::fmt::Debug for Corpus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Corpus({} pages)", self.len())
    }
}

/// Pages [`read_corpus`] reads at most: 4 GiB of pages. Larger corpora need
/// [`read_corpus_bounded`].
pub const DEFAULT_MAX_PAGES: usize = (4 << 30) / PAGE_SIZE;

/// The first two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Bytes read (and, for gzip, decompressed) per step.
const READ_CHUNK: usize = 64 * PAGE_SIZE;

/// How a corpus file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Raw pages back to back.
    Raw,
    /// Raw pages, gzip-compressed (one or more gzip members).
    Gzip,
}

impl Encoding {
    /// The encoding a file name says: `Gzip` if it ends in `.gz`, `Raw` if it ends
    /// in `.pages`, `None` if it says neither.
    pub fn from_name(path: &Path) -> Option<Encoding> {
        let name = path.file_name()?.to_string_lossy();
        if name.ends_with(".gz") {
            Some(Encoding::Gzip)
        } else if name.ends_with(".pages") {
            Some(Encoding::Raw)
        } else {
            None
        }
    }
}

/// Read a `.pages` or `.pages.gz` file of at most [`DEFAULT_MAX_PAGES`] pages; see
/// [`read_corpus_bounded`].
pub fn read_corpus(path: &Path) -> Result<Corpus, CorpusError> {
    read_corpus_bounded(path, DEFAULT_MAX_PAGES)
}

/// Read a corpus file of at most `max_pages` pages.
///
/// The name decides the encoding: a name ending in `.gz` is gzip, one ending in
/// `.pages` is raw pages, whatever its first bytes (raw memory may well start with
/// gzip's magic bytes `1f 8b`). Only a name that says neither is decided by its
/// first two bytes: gzip's magic means gzip.
///
/// The file is read (and decompressed) as a stream, a chunk at a time: a file that
/// holds, or expands to, more than `max_pages` pages is refused with
/// [`CorpusError::TooManyPages`] as soon as the bound is passed, before anything
/// past it is decompressed or allocated.
pub fn read_corpus_bounded(path: &Path, max_pages: usize) -> Result<Corpus, CorpusError> {
    let file = File::open(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut file = BufReader::with_capacity(READ_CHUNK, file);
    match Encoding::from_name(path) {
        Some(encoding) => read_pages(file, encoding, path, max_pages),
        None => {
            let mut magic = [0u8; 2];
            let seen = read_up_to(&mut file, &mut magic).map_err(|source| CorpusError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let encoding = if magic[..seen] == GZIP_MAGIC {
                Encoding::Gzip
            } else {
                Encoding::Raw
            };
            read_pages((&magic[..seen]).chain(file), encoding, path, max_pages)
        }
    }
}

/// Read at most `max_pages` pages from `input`, stored as `encoding`; `origin`
/// names the input in errors. See [`read_corpus_bounded`].
pub fn read_pages(
    input: impl Read,
    encoding: Encoding,
    origin: &Path,
    max_pages: usize,
) -> Result<Corpus, CorpusError> {
    match encoding {
        Encoding::Raw => read_bounded(input, origin, max_pages, |source| CorpusError::Io {
            path: origin.to_path_buf(),
            source,
        }),
        Encoding::Gzip => read_bounded(MultiGzDecoder::new(input), origin, max_pages, |source| {
            CorpusError::Gzip {
                path: origin.to_path_buf(),
                source,
            }
        }),
    }
}

/// Read `input` to its end, a chunk at a time, into a buffer that never grows past
/// `max_pages` pages; fail as soon as the input holds more.
fn read_bounded(
    mut input: impl Read,
    origin: &Path,
    max_pages: usize,
    read_error: impl Fn(io::Error) -> CorpusError,
) -> Result<Corpus, CorpusError> {
    let max_bytes = max_pages.saturating_mul(PAGE_SIZE);
    let mut bytes: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let read = read_up_to(&mut input, &mut chunk).map_err(&read_error)?;
        if read == 0 {
            break;
        }
        let len = bytes.len() + read;
        if len > max_bytes {
            return Err(CorpusError::TooManyPages {
                path: origin.to_path_buf(),
                max_pages,
            });
        }
        if len > bytes.capacity() {
            // Double as usual, but never past the bound.
            let capacity = len.max(bytes.capacity().saturating_mul(2)).min(max_bytes);
            bytes
                .try_reserve_exact(capacity - bytes.len())
                .map_err(|_| CorpusError::OutOfMemory {
                    path: origin.to_path_buf(),
                    bytes: capacity,
                })?;
        }
        bytes.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
    Corpus::from_bytes(bytes, origin)
}

/// Fill `buf` from `input` as far as it goes: returns fewer bytes than `buf` holds
/// only at the end of the input.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The independent reference figures for a corpus (see
/// `samples/dev-mixed.reference.txt` for their definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reference {
    /// 4096-byte pages in the file.
    pub pages: u64,
    /// Pages whose bytes are all zero.
    pub zero: u64,
    /// Pages that are one repeated 8-byte word other than zero.
    pub same_filled: u64,
    /// `pages - zero - same_filled`.
    pub nonfill: u64,
    /// Distinct contents among the non-filled pages.
    pub unique_nonfill: u64,
    /// Non-filled pages identical to an earlier one.
    pub dup_nonfill: u64,
    /// Linux zram with lz4: `mem_used` in MiB for the whole corpus.
    pub zram_lz4_mem_used_mib: u64,
}

/// Parse `key=value` reference figures (comment lines start with `#`).
pub fn parse_reference(text: &str) -> Result<Reference, CorpusError> {
    let field = |key: &str| -> Result<u64, CorpusError> {
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(str::split_whitespace)
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| CorpusError::Reference(format!("no field `{key}`")))?
            .parse()
            .map_err(|e| CorpusError::Reference(format!("field `{key}`: {e}")))
    };
    let zram_lz4 = text
        .lines()
        .find(|line| line.starts_with("zram[lz4]"))
        .ok_or_else(|| CorpusError::Reference("no zram[lz4] line".into()))?;
    Ok(Reference {
        pages: field("pages")?,
        zero: field("zero")?,
        same_filled: field("same_filled")?,
        nonfill: field("nonfill")?,
        unique_nonfill: field("unique_nonfill")?,
        dup_nonfill: field("dup_nonfill")?,
        zram_lz4_mem_used_mib: parse_reference_line(zram_lz4, "mem_used_MiB")?,
    })
}

fn parse_reference_line(line: &str, key: &str) -> Result<u64, CorpusError> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| CorpusError::Reference(format!("no `{key}` in `{line}`")))?
        .parse()
        .map_err(|e| CorpusError::Reference(format!("`{key}`: {e}")))
}

/// The repository's `samples/` directory (the shipped corpora), or
/// `$FOLDSWAP_SAMPLES` when set.
pub fn samples_dir() -> PathBuf {
    std::env::var_os("FOLDSWAP_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(repository_samples_dir)
}

/// `samples/` in the repository this crate was built from.
fn repository_samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples")
}

/// Path of the dev corpus, `samples/dev-mixed.pages.gz`.
pub fn dev_mixed_path() -> PathBuf {
    samples_dir().join("dev-mixed.pages.gz")
}

/// Path of the dev corpus's independent reference figures,
/// `samples/dev-mixed.reference.txt`.
pub fn dev_mixed_reference_path() -> PathBuf {
    samples_dir().join("dev-mixed.reference.txt")
}

/// The dev corpus and its reference figures, read once per process.
///
/// Tests call this and fail (not skip) when the corpus is missing: it is part of the
/// repository.
pub fn dev_mixed() -> Result<&'static (Corpus, Reference), String> {
    static DEV_MIXED: OnceLock<Result<(Corpus, Reference), String>> = OnceLock::new();
    DEV_MIXED
        .get_or_init(|| {
            let corpus = read_corpus(&dev_mixed_path()).map_err(|e| e.to_string())?;
            let ref_path = dev_mixed_reference_path();
            let text = std::fs::read_to_string(&ref_path)
                .map_err(|e| format!("{}: {e}", ref_path.display()))?;
            let reference = parse_reference(&text).map_err(|e| e.to_string())?;
            Ok((corpus, reference))
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("foldswap-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn reads_raw_and_gzip_pages() {
        let mut bytes = vec![0u8; 3 * PAGE_SIZE];
        bytes[PAGE_SIZE] = 1;
        let raw = read_corpus(&temp("a.pages", &bytes)).unwrap();
        let gz = read_corpus(&temp("a.pages.gz", &gzip(&bytes))).unwrap();
        assert_eq!(raw.len(), 3);
        assert_eq!(raw.as_bytes(), gz.as_bytes());
        assert_eq!(raw.page(1).unwrap()[0], 1);
        assert!(raw.page(3).is_none());
        assert_eq!(raw.pages().count(), 3);
    }

    #[test]
    fn rejects_partial_pages_and_truncated_gzip() {
        let err = read_corpus(&temp("b.pages", &[0u8; 5000])).unwrap_err();
        assert!(
            matches!(err, CorpusError::NotPageMultiple { len: 5000, .. }),
            "{err}"
        );
        let gz = gzip(&vec![7u8; 4 * PAGE_SIZE]);
        let err = read_corpus(&temp("c.pages.gz", &gz[..gz.len() / 2])).unwrap_err();
        assert!(matches!(err, CorpusError::Gzip { .. }), "{err}");
        let err = read_corpus(Path::new("/nonexistent/x.pages")).unwrap_err();
        assert!(matches!(err, CorpusError::Io { .. }), "{err}");
    }

    #[test]
    fn a_raw_corpus_starting_with_gzip_magic_is_read_as_raw() {
        let mut bytes = vec![0u8; 2 * PAGE_SIZE];
        bytes[..4].copy_from_slice(&[0x1f, 0x8b, 0x08, 0x00]);
        let corpus = read_corpus(&temp("magic.pages", &bytes)).unwrap();
        assert_eq!(corpus.as_bytes(), &bytes[..]);
        // A name that says nothing: the magic bytes decide.
        let raw = read_corpus(&temp("magic-raw", &bytes));
        assert!(matches!(raw, Err(CorpusError::Gzip { .. })), "{raw:?}");
        let gz = read_corpus(&temp("magic-gz", &gzip(&bytes))).unwrap();
        assert_eq!(gz.as_bytes(), &bytes[..]);
        let plain = read_corpus(&temp("plain", &[5u8; PAGE_SIZE])).unwrap();
        assert_eq!(plain.len(), 1);
        // A `.gz` name that is not gzip is a damaged gzip stream, not raw pages.
        let err = read_corpus(&temp("not-gzip.pages.gz", &[5u8; PAGE_SIZE])).unwrap_err();
        assert!(matches!(err, CorpusError::Gzip { .. }), "{err}");
    }

    #[test]
    fn reads_up_to_the_page_bound_and_refuses_past_it() {
        let bytes = vec![9u8; 3 * PAGE_SIZE];
        for (name, file) in [
            ("bound.pages", bytes.clone()),
            ("bound.pages.gz", gzip(&bytes)),
        ] {
            let path = temp(name, &file);
            assert_eq!(read_corpus_bounded(&path, 3).unwrap().len(), 3);
            let err = read_corpus_bounded(&path, 2).unwrap_err();
            assert!(
                matches!(err, CorpusError::TooManyPages { max_pages: 2, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("more than 2 pages"), "{err}");
        }
    }

    /// Counts the bytes read through it.
    struct Counting<R> {
        inner: R,
        read: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let read = self.inner.read(buf)?;
            self.read += read;
            Ok(read)
        }
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_bound_without_being_decompressed() {
        // 256 gzip members of 1 MiB of zeros each: 256 MiB of pages from ~260 KiB.
        let member = gzip(&vec![0u8; 1 << 20]);
        let bomb = member.repeat(256);
        let path = temp("bomb.pages.gz", &bomb);
        let err = read_corpus_bounded(&path, 8).unwrap_err();
        assert!(
            matches!(err, CorpusError::TooManyPages { max_pages: 8, .. }),
            "{err}"
        );
        // Only the start of the stream was read: the rest was never decompressed.
        let mut input = Counting {
            inner: &bomb[..],
            read: 0,
        };
        let err = read_pages(&mut input, Encoding::Gzip, &path, 8).unwrap_err();
        assert!(matches!(err, CorpusError::TooManyPages { .. }), "{err}");
        assert!(
            input.read < bomb.len() / 8,
            "read {} of {} compressed bytes",
            input.read,
            bomb.len()
        );
    }

    #[test]
    fn the_dev_corpus_ships_inside_the_repository() {
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let samples = repository_samples_dir().canonicalize().unwrap();
        assert!(samples.starts_with(repository.canonicalize().unwrap()));
        assert!(samples.join("dev-mixed.pages.gz").is_file());
        assert!(samples.join("dev-mixed.reference.txt").is_file());
        let (corpus, reference) = dev_mixed().unwrap();
        assert_eq!(corpus.len() as u64, reference.pages);
        let zero = corpus.pages().filter(|p| p.iter().all(|&b| b == 0)).count();
        assert_eq!(zero as u64, reference.zero);
    }

    #[test]
    fn parses_the_shipped_reference() {
        let text = std::fs::read_to_string(dev_mixed_reference_path())
            .expect("samples/dev-mixed.reference.txt is part of the repository");
        let r = parse_reference(&text).unwrap();
        assert_eq!(r.pages, r.zero + r.same_filled + r.nonfill);
        assert_eq!(r.nonfill, r.unique_nonfill + r.dup_nonfill);
        assert!(r.zram_lz4_mem_used_mib > 0);
        assert!(parse_reference("pages=1").is_err());
    }
}
