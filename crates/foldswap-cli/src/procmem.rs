//! Reading the anonymous resident pages of a live process.
//!
//! Four files under `/proc/PID/` are used, and nothing else:
//!
//! * `stat` says whether the process is a kernel thread (`PF_KTHREAD` in its
//!   flags): a kernel thread has no user memory, and is refused as such.
//! * `maps` lists the mappings. Only *private anonymous* ones are taken: private
//!   (`p` in the permissions), readable, and either without a path, `[heap]`,
//!   `[stack]`, or a name given with `PR_SET_VMA_ANON_NAME` (`[anon:...]`). File
//!   mappings, shared mappings and the kernel's `[vvar]`, `[vdso]`, `[vsyscall]`
//!   are skipped: they are not what swap or KSM deals with.
//! * `pagemap` has one 64-bit entry per virtual page; bit 63 says the page is
//!   present in RAM. Pages swapped out (bit 62) or never touched are not read.
//!   A page that is mapped to the kernel's shared zero page counts as present (it
//!   reads as a zero page).
//! * `mem` gives the bytes, read with `pread` at the page's address, a run of
//!   consecutive present pages at a time.
//!
//! The process keeps running while it is read, so a page is a snapshot of the
//! moment it was read; a range it unmaps meanwhile is skipped (and counted on
//! stderr), while a range still mapped that cannot be read is an error. Reading needs ptrace access to the process (the same user
//! with `ptrace_scope` 0, or root). A process that is gone, or memory that cannot be
//! read, is an [`InputError`] naming the process and the problem.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;

use foldswap_mem::PAGE_SIZE;

use crate::error::InputError;

/// Bit 63 of a pagemap entry: the page is present in RAM.
pub(crate) const PAGEMAP_PRESENT: u64 = 1 << 63;
/// Bit 62 of a pagemap entry: the page is in swap.
const PAGEMAP_SWAPPED: u64 = 1 << 62;
/// Pagemap entries read per `pread` (covers 2 MiB of address space).
const PAGEMAP_BATCH: usize = 512;

/// One private anonymous mapping of a process: `[start, end)`, page aligned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `[heap]`, `[stack]`, `[anon:NAME]` or empty.
    pub label: String,
}

/// Parse one line of `/proc/PID/maps` and keep it if it is a readable private
/// anonymous mapping. `Err(())` means the line does not parse.
///
/// ```
/// use foldswap_cli::procmem::private_anonymous_mapping;
/// let heap = "55d0c9a6b000-55d0c9a8c000 rw-p 00000000 00:00 0          [heap]";
/// assert_eq!(private_anonymous_mapping(heap).unwrap().unwrap().label, "[heap]");
/// let lib = "7f1c2a000000-7f1c2a022000 r--p 00000000 08:01 1234 /usr/lib/libc.so.6";
/// assert!(private_anonymous_mapping(lib).unwrap().is_none());
/// ```
#[allow(clippy::result_unit_err)]
pub fn private_anonymous_mapping(line: &str) -> Result<Option<Mapping>, ()> {
    let mut fields = line.split_whitespace();
    let range = fields.next().ok_or(())?;
    let perms = fields.next().ok_or(())?;
    let _offset = fields.next().ok_or(())?;
    let _device = fields.next().ok_or(())?;
    let _inode = fields.next().ok_or(())?;
    let label = fields.collect::<Vec<_>>().join(" ");
    let (start, end) = range.split_once('-').ok_or(())?;
    let start = u64::from_str_radix(start, 16).map_err(|_| ())?;
    let end = u64::from_str_radix(end, 16).map_err(|_| ())?;
    let perms = perms.as_bytes();
    if perms.len() != 4 || end < start {
        return Err(());
    }
    let readable = perms.first() == Some(&b'r');
    let private = perms.get(3) == Some(&b'p');
    if readable && private && is_anonymous_label(&label) {
        Ok(Some(Mapping { start, end, label }))
    } else {
        Ok(None)
    }
}

/// An anonymous mapping's path column: empty, the heap, a stack, or an anon name.
fn is_anonymous_label(label: &str) -> bool {
    label.is_empty()
        || label == "[heap]"
        || label == "[stack]"
        || label.starts_with("[stack:")
        || label.starts_with("[anon:")
}

/// Whether a `/proc/PID/pagemap` entry says its page is present in RAM (bit 63)
/// and not in swap (bit 62): a page to read.
pub fn page_present(entry: u64) -> bool {
    entry & PAGEMAP_PRESENT != 0 && entry & PAGEMAP_SWAPPED == 0
}

/// The runs of consecutive present pages (see [`page_present`]) in a block of
/// pagemap entries (8 bytes each, little-endian, as `pagemap` gives them): each run
/// as `(index of its first entry, pages)`, in order. A trailing partial entry is
/// ignored.
///
/// ```
/// use foldswap_cli::procmem::present_runs;
/// let present = (1u64 << 63).to_le_bytes();
/// let absent = 0u64.to_le_bytes();
/// let entries = [absent, present, present, absent, present].concat();
/// assert_eq!(present_runs(&entries), [(1, 2), (4, 1)]);
/// ```
pub fn present_runs(entries: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (index, entry) in entries.chunks_exact(8).enumerate() {
        let entry = u64::from_le_bytes(entry.try_into().unwrap_or([0; 8]));
        if !page_present(entry) {
            continue;
        }
        match runs.last_mut() {
            Some((first, pages)) if *first + *pages == index => *pages += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

/// The readable private anonymous mappings of process `pid`.
pub fn anonymous_mappings(pid: u32) -> Result<Vec<Mapping>, InputError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| proc_error(pid, format!("/proc/{pid}/maps"), e))?;
    let mut mappings = Vec::new();
    for line in text.lines() {
        match private_anonymous_mapping(line) {
            Ok(Some(mapping)) => mappings.push(mapping),
            Ok(None) => {}
            Err(()) => {
                return Err(InputError::MalformedMaps {
                    pid,
                    line: line.to_owned(),
                });
            }
        }
    }
    Ok(mappings)
}

/// Fail with [`InputError::NoSuchProcess`] unless every process in `pids` exists,
/// and with [`InputError::KernelThread`] if one is a kernel thread (it has no user
/// memory), so a command naming either fails before it reads or writes anything.
pub fn check_processes_exist(pids: &[u32]) -> Result<(), InputError> {
    for &pid in pids {
        if !process_exists(pid) {
            return Err(InputError::NoSuchProcess { pid });
        }
        if let Some(stat) = process_stat(pid)?
            && stat.is_kernel_thread()
        {
            return Err(InputError::KernelThread {
                pid,
                name: stat.name,
            });
        }
    }
    Ok(())
}

/// `PF_KTHREAD` in the flags of `/proc/PID/stat` (`include/linux/sched.h`): the
/// task is a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// What `/proc/PID/stat` says of a process that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name (`comm`, field 2, without its parentheses).
    pub name: String,
    /// The kernel's task flags (field 9, `PF_*`).
    pub flags: u64,
}

impl ProcStat {
    /// A kernel thread: it has no user address space, so no anonymous pages.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Parse the text of `/proc/PID/stat`; `None` if it does not parse. The command
/// name may hold spaces and parentheses: it runs to the *last* `)`.
///
/// ```
/// use foldswap_cli::procmem::parse_stat;
/// let kthreadd = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 25";
/// let stat = parse_stat(kthreadd).unwrap();
/// assert_eq!(stat.name, "kthreadd");
/// assert!(stat.is_kernel_thread());
/// ```
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    // After the name: state, ppid, pgrp, session, tty_nr, tpgid, flags.
    let flags = text
        .get(close + 1..)?
        .split_whitespace()
        .nth(6)?
        .parse()
        .ok()?;
    Some(ProcStat { name, flags })
}

/// `/proc/PID/stat` of a process, parsed; `None` if it does not parse.
fn process_stat(pid: u32) -> Result<Option<ProcStat>, InputError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| proc_error(pid, path, e))?;
    Ok(parse_stat(&text))
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Feed every anonymous resident page of process `pid` to `page`, in address
/// order. Returns the number of pages fed.
pub fn read_process_pages(
    pid: u32,
    page: &mut dyn FnMut(&[u8; PAGE_SIZE]),
) -> Result<u64, InputError> {
    check_processes_exist(&[pid])?;
    let mappings = anonymous_mappings(pid)?;
    let pagemap = open_proc_file(pid, "pagemap")?;
    let mem = open_proc_file(pid, "mem")?;
    let mut reader = PageReader {
        pid,
        pagemap,
        mem,
        buffer: Vec::new(),
        fed: 0,
        skipped: 0,
    };
    for mapping in &mappings {
        reader.read_mapping(mapping, page)?;
    }
    if reader.skipped > 0 {
        eprintln!(
            "process {pid}: {} pages skipped (unmapped while being read)",
            reader.skipped
        );
    }
    Ok(reader.fed)
}

/// Open `/proc/PID/NAME` for reading.
pub(crate) fn open_proc_file(pid: u32, name: &str) -> Result<File, InputError> {
    let path = format!("/proc/{pid}/{name}");
    File::open(&path).map_err(|e| proc_error(pid, path, e))
}

/// Reads present pages of one process through its open `pagemap` and `mem`.
struct PageReader {
    pid: u32,
    pagemap: File,
    mem: File,
    buffer: Vec<u8>,
    fed: u64,
    skipped: u64,
}

impl PageReader {
    /// Read the present pages of `mapping`, a pagemap batch at a time.
    fn read_mapping(
        &mut self,
        mapping: &Mapping,
        page: &mut dyn FnMut(&[u8; PAGE_SIZE]),
    ) -> Result<(), InputError> {
        let page_size = PAGE_SIZE as u64;
        let mut vpage = mapping.start / page_size;
        let end_page = mapping.end / page_size;
        let mut entries = vec![0u8; PAGEMAP_BATCH * 8];
        while vpage < end_page {
            let count = (end_page - vpage).min(PAGEMAP_BATCH as u64) as usize;
            let bytes = &mut entries[..count * 8];
            self.pagemap
                .read_exact_at(bytes, vpage * 8)
                .map_err(|e| proc_error(self.pid, format!("/proc/{}/pagemap", self.pid), e))?;
            for (first, pages) in present_runs(bytes) {
                self.read_run(vpage + first as u64, pages, page)?;
            }
            vpage += count as u64;
        }
        Ok(())
    }

    /// Read `pages` consecutive present pages starting at virtual page `vpage`.
    fn read_run(
        &mut self,
        vpage: u64,
        pages: usize,
        page: &mut dyn FnMut(&[u8; PAGE_SIZE]),
    ) -> Result<(), InputError> {
        let address = vpage * PAGE_SIZE as u64;
        let end = address + (pages * PAGE_SIZE) as u64;
        self.buffer.resize(pages * PAGE_SIZE, 0);
        if let Err(e) = self.mem.read_exact_at(&mut self.buffer, address) {
            // The process runs on: a range it unmapped meanwhile is not an error.
            if !self.still_mapped(address, end)? {
                self.skipped += pages as u64;
                return Ok(());
            }
            let what = format!("memory at {address:#x}..{end:#x}");
            return Err(proc_error(self.pid, what, e));
        }
        for chunk in self.buffer.chunks_exact(PAGE_SIZE) {
            if let Ok(bytes) = <&[u8; PAGE_SIZE]>::try_from(chunk) {
                page(bytes);
                self.fed += 1;
            }
        }
        Ok(())
    }

    /// Whether `[start, end)` still lies inside one readable private anonymous
    /// mapping of the process.
    fn still_mapped(&self, start: u64, end: u64) -> Result<bool, InputError> {
        let mappings = anonymous_mappings(self.pid)?;
        Ok(mappings.iter().any(|m| m.start <= start && end <= m.end))
    }
}

/// Turn an OS error on a `/proc/PID/` file into the right [`InputError`]: a process
/// that has gone is [`InputError::NoSuchProcess`], anything else names the file.
fn proc_error(pid: u32, what: String, source: io::Error) -> InputError {
    let gone = source.kind() == ErrorKind::NotFound || !process_exists(pid);
    if gone {
        InputError::NoSuchProcess { pid }
    } else {
        InputError::ProcessUnreadable { pid, what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_readable_private_anonymous_mappings() {
        let keep = |line: &str| private_anonymous_mapping(line).unwrap().is_some();
        assert!(keep("7f00-8000 rw-p 00000000 00:00 0"));
        assert!(keep("7f00-8000 rw-p 00000000 00:00 0   [stack]"));
        assert!(keep("7f00-8000 rw-p 00000000 00:00 0   [anon:arena]"));
        assert!(!keep(
            "7f00-8000 rw-s 00000000 00:01 5   /dev/zero (deleted)"
        ));
        assert!(!keep("7f00-8000 ---p 00000000 00:00 0"));
        assert!(!keep("7f00-8000 r--p 00000000 00:00 0   [vvar]"));
        assert!(!keep("7f00-8000 r-xp 00000000 00:00 0   [vdso]"));
        assert!(!keep(
            "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]"
        ));
        assert!(!keep("7f00-8000 rw-p 00001000 08:01 77 /usr/lib/x.so"));
        let mapping = private_anonymous_mapping("1000-3000 rw-p 0 00:00 0")
            .unwrap()
            .unwrap();
        assert_eq!((mapping.start, mapping.end), (0x1000, 0x3000));
    }

    #[test]
    fn a_range_unmapped_meanwhile_is_told_apart_from_a_mapped_one() {
        let pid = std::process::id();
        let reader = PageReader {
            pid,
            pagemap: open_proc_file(pid, "pagemap").unwrap(),
            mem: open_proc_file(pid, "mem").unwrap(),
            buffer: Vec::new(),
            fed: 0,
            skipped: 0,
        };
        let mapping = anonymous_mappings(pid).unwrap().pop().unwrap();
        assert!(reader.still_mapped(mapping.start, mapping.end).unwrap());
        // The first page of the address space is never mapped.
        assert!(!reader.still_mapped(0, PAGE_SIZE as u64).unwrap());
    }

    #[test]
    fn stat_says_which_tasks_are_kernel_threads() {
        let kthreadd = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 25 0";
        assert_eq!(
            parse_stat(kthreadd),
            Some(ProcStat {
                name: "kthreadd".into(),
                flags: 2_129_984
            })
        );
        assert!(parse_stat(kthreadd).unwrap().is_kernel_thread());
        // A user process whose name holds spaces and parentheses.
        let user = "77 (a) b (c)) R 1 77 77 0 -1 4194560 12 0 0 0 1 0 0 0 20 0 1 0 9";
        let stat = parse_stat(user).unwrap();
        assert_eq!(stat.name, "a) b (c)");
        assert!(!stat.is_kernel_thread());
        assert!(parse_stat("").is_none());
        assert!(parse_stat("3 (x) S 1 2").is_none());
        assert!(parse_stat("3 (x) S 1 2 3 4 5 zz").is_none());
        let own = process_stat(std::process::id()).unwrap().unwrap();
        assert!(!own.is_kernel_thread(), "{own:?}");
    }

    #[test]
    fn a_kernel_thread_is_named_as_one() {
        let Some(pid) = kernel_thread() else {
            // A PID namespace without kernel threads in it: nothing to name.
            eprintln!("no kernel thread visible in /proc");
            return;
        };
        let err = check_processes_exist(&[pid]).unwrap_err();
        assert!(matches!(err, InputError::KernelThread { .. }), "{err}");
        let err = read_process_pages(pid, &mut |_| {}).unwrap_err();
        assert!(matches!(err, InputError::KernelThread { .. }), "{err}");
        assert!(err.to_string().contains("kernel thread"), "{err}");
    }

    /// A kernel thread visible in `/proc` (kthreadd is PID 2 outside containers).
    fn kernel_thread() -> Option<u32> {
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                process_stat(pid)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.is_kernel_thread())
            })
    }

    #[test]
    fn present_runs_take_present_unswapped_pages_only() {
        let entry = |bits: u64| bits.to_le_bytes();
        let present = entry(PAGEMAP_PRESENT | 0x1234);
        let swapped = entry(PAGEMAP_PRESENT | PAGEMAP_SWAPPED);
        let absent = entry(0);
        let entries = [
            present, present, swapped, absent, present, present, present, absent,
        ]
        .concat();
        assert_eq!(present_runs(&entries), [(0, 2), (4, 3)]);
        assert_eq!(present_runs(&entries[..8 * 5 + 3]), [(0, 2), (4, 1)]);
        assert!(present_runs(&[]).is_empty());
        assert!(!page_present(PAGEMAP_SWAPPED));
    }

    #[test]
    fn rejects_malformed_maps_lines() {
        assert!(private_anonymous_mapping("").is_err());
        assert!(private_anonymous_mapping("zz-10 rw-p 0 00:00 0").is_err());
        assert!(private_anonymous_mapping("20-10 rw-p 0 00:00 0").is_err());
        assert!(private_anonymous_mapping("10-20 rw 0 00:00 0").is_err());
    }

    #[test]
    fn reads_own_process_pages_and_reports_gone_processes() {
        let mut marker = vec![0u8; 16 * PAGE_SIZE];
        marker
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8 ^ 0x5a);
        // The first page-aligned window of the buffer is what the process holds.
        let skip = marker.as_ptr().align_offset(PAGE_SIZE);
        let expected = marker[skip..skip + PAGE_SIZE].to_vec();
        let mut found = 0;
        let pages = read_process_pages(std::process::id(), &mut |p| {
            if p[..] == expected[..] {
                found += 1;
            }
        })
        .unwrap();
        assert!(pages > 16);
        assert!(found >= 1, "no marker page found among {pages} pages");
        let err = read_process_pages(u32::MAX - 1, &mut |_| {}).unwrap_err();
        assert!(matches!(err, InputError::NoSuchProcess { .. }), "{err}");
    }
}
