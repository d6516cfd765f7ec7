//! The merge trees' host over live processes: [`ProcessHost`].
//!
//! `foldswap scan` counts merges, it does not make them: one process cannot remap
//! another's pages. So the host answers the merge trees (`foldswap_merge`'s
//! [`PageContents`] and [`MergeHost`]) by reading pages from `/proc/PID/mem` and
//! comparing bytes. A merged page's shared copy is snapshotted (a [`PageId::Kept`]),
//! and a page counts as still merged while its bytes equal that snapshot (a write
//! to it "breaks" the merge, as copy-on-write would). The time spent reading pages
//! is summed apart ([`ProcessHost::read_ns`]): a kernel scanner does not pay it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use foldswap_mem::{Error, PAGE_SIZE};
use foldswap_merge::{MergeHost, MergeResult, PageContents};
use xxhash_rust::xxh3::xxh3_64;
use xxhash_rust::xxh32::xxh32;

use crate::error::InputError;
use crate::procmem::{PAGEMAP_PRESENT, open_proc_file};

/// A page as the merge trees know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageId {
    /// Virtual page `vpage` of process number `process` (index in the host's list).
    Live {
        /// Index of the process.
        process: u32,
        /// Virtual address / 4096.
        vpage: u64,
    },
    /// A snapshot of a merged (shared) page's bytes.
    Kept(u32),
}

/// One process being scanned.
struct Process {
    mem: File,
    pagemap: File,
}

/// The merge trees' host over live processes; see the module documentation.
pub struct ProcessHost {
    processes: Vec<Process>,
    kept: Vec<Option<Box<[u8; PAGE_SIZE]>>>,
    free_kept: Vec<u32>,
    a: Box<[u8; PAGE_SIZE]>,
    b: Box<[u8; PAGE_SIZE]>,
    read_ns: u64,
}

impl ProcessHost {
    /// Open `/proc/PID/mem` and `pagemap` of every process.
    pub fn open(pids: &[u32]) -> Result<Self, InputError> {
        let processes = pids
            .iter()
            .map(|&pid| {
                Ok(Process {
                    mem: open_proc_file(pid, "mem")?,
                    pagemap: open_proc_file(pid, "pagemap")?,
                })
            })
            .collect::<Result<_, InputError>>()?;
        Ok(ProcessHost {
            processes,
            kept: Vec::new(),
            free_kept: Vec::new(),
            a: Box::new([0; PAGE_SIZE]),
            b: Box::new([0; PAGE_SIZE]),
            read_ns: 0,
        })
    }

    /// Nanoseconds spent reading pages so far.
    pub fn read_ns(&self) -> u64 {
        self.read_ns
    }

    /// The page last read into buffer A.
    pub(crate) fn page_a(&self) -> &[u8; PAGE_SIZE] {
        &self.a
    }

    /// Whether virtual page `vpage` of `process` is present in RAM.
    pub(crate) fn present(&self, process: u32, vpage: u64) -> bool {
        let mut entry = [0u8; 8];
        self.processes
            .get(process as usize)
            .is_some_and(|p| p.pagemap.read_exact_at(&mut entry, vpage * 8).is_ok())
            && u64::from_le_bytes(entry) & PAGEMAP_PRESENT != 0
    }

    /// Read page `id` into buffer `which`; false if it cannot be read (unmapped
    /// meanwhile).
    pub(crate) fn read(&mut self, id: PageId, which: Buffer) -> bool {
        let start = Instant::now();
        let out = match which {
            Buffer::A => &mut self.a,
            Buffer::B => &mut self.b,
        };
        let ok = match id {
            PageId::Live { process, vpage } => {
                self.processes.get(process as usize).is_some_and(|p| {
                    p.mem
                        .read_exact_at(&mut out[..], vpage * PAGE_SIZE as u64)
                        .is_ok()
                })
            }
            PageId::Kept(slot) => match self.kept.get(slot as usize) {
                Some(Some(bytes)) => {
                    out.copy_from_slice(&bytes[..]);
                    true
                }
                _ => false,
            },
        };
        self.read_ns += u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        ok
    }

    /// Read both pages and compare them; false if either cannot be read.
    fn equal(&mut self, a: PageId, b: PageId) -> bool {
        self.read(a, Buffer::A) && self.read(b, Buffer::B) && self.a == self.b
    }

    /// Keep a snapshot of buffer A as a shared page.
    fn keep_a(&mut self) -> PageId {
        let copy = self.a.clone();
        match self.free_kept.pop() {
            Some(slot) => {
                if let Some(entry) = self.kept.get_mut(slot as usize) {
                    *entry = Some(copy);
                }
                PageId::Kept(slot)
            }
            None => {
                self.kept.push(Some(copy));
                PageId::Kept(self.kept.len() as u32 - 1)
            }
        }
    }
}

/// The host's two page buffers.
#[derive(Clone, Copy)]
pub(crate) enum Buffer {
    A,
    B,
}

impl PageContents for ProcessHost {
    type Id = PageId;

    fn full_hash(&mut self, page: PageId) -> Result<u64, Error> {
        if self.read(page, Buffer::A) {
            Ok(xxh3_64(&self.a[..]))
        } else {
            Err(Error::NotFound)
        }
    }

    fn same_contents(&mut self, a: PageId, b: PageId) -> Result<bool, Error> {
        Ok(self.equal(a, b))
    }
}

impl MergeHost for ProcessHost {
    fn checksum(&mut self, page: PageId) -> Result<u32, Error> {
        if self.read(page, Buffer::A) {
            Ok(xxh32(&self.a[..], 0))
        } else {
            Err(Error::NotFound)
        }
    }

    fn merge_pair(&mut self, page: PageId, partner: PageId) -> Result<MergeResult<PageId>, Error> {
        if self.equal(page, partner) {
            Ok(MergeResult::Merged {
                kept: self.keep_a(),
            })
        } else {
            Ok(MergeResult::PageChanged)
        }
    }

    fn merge_into(&mut self, page: PageId, kept: PageId) -> Result<MergeResult<PageId>, Error> {
        if self.equal(page, kept) {
            Ok(MergeResult::Merged { kept })
        } else {
            Ok(MergeResult::PageChanged)
        }
    }

    fn still_merged(&mut self, page: PageId, kept: PageId) -> Result<bool, Error> {
        Ok(self.equal(page, kept))
    }

    fn release_kept(&mut self, kept: PageId) {
        if let PageId::Kept(slot) = kept
            && let Some(entry) = self.kept.get_mut(slot as usize)
        {
            *entry = None;
            self.free_kept.push(slot);
        }
    }
}
