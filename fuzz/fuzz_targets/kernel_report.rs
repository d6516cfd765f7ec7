//! The kernel module's statistics writer (kernel-glue/kglue/src/report.rs): any
//! figures, into buffers of any size up to the sysfs page the module hands it.
//! It never panics, never writes outside the slice it was given, reports a
//! too-small buffer as an error with only a prefix of the text written, and
//! when it succeeds writes exactly 46 well-formed `name value` lines holding
//! the figures.
#![no_main]

use arbitrary::Arbitrary;
use foldswap_kglue::{Report, SliceWriter, TextBuf};
use libfuzzer_sys::fuzz_target;

/// The sysfs page the module renders into.
const SYSFS_PAGE: usize = 4096;
/// Bytes after the slice that must stay untouched.
const GUARD: usize = 64;
const CANARY: u8 = 0xa5;

#[derive(Debug, Arbitrary)]
struct Input {
    figures: [u64; 45],
    /// The buffer's length (taken modulo SYSFS_PAGE + 1).
    len: u16,
    /// Where the buffer starts in a larger allocation (alignment does not matter).
    start: u8,
}

fn report(f: &[u64; 45]) -> Report {
    Report {
        stored_pages: f[0],
        same_filled_pages: f[1],
        duplicate_pages: f[2],
        patched_pages: f[3],
        compressed_pages: f[4],
        raw_pages: f[5],
        stores: f[6],
        dedup_hits: f[7],
        loads: f[8],
        load_misses: f[9],
        invalidates: f[10],
        areas: f[11],
        reject_pool_full: f[12],
        reject_alloc_fail: f[13],
        reject_compress_poor: f[14],
        reject_other: f[15],
        reject_memcg_limit: f[16],
        reject_domain_busy: f[17],
        compressed_bytes: f[18],
        pool_bytes: f[19],
        index_bytes: f[20],
        offset_table_bytes: f[21],
        entry_bytes: f[22],
        dedup_index_bytes: f[23],
        similarity_index_bytes: f[24],
        ladder_bytes: f[25],
        limit_bytes: f[26],
        scanner_rounds: f[27],
        scanner_wakeups: f[28],
        scanned_pages: f[29],
        recompressed_pages: f[30],
        base_only_pages: f[31],
        blocked_pages: f[32],
        blocks_formed: f[33],
        block_rewrites: f[34],
        entries_moved: f[35],
        block_bytes: f[36],
        block_loads: f[37],
        writeback: f[38],
        written_back_pages: f[39],
        writeback_busy: f[40],
        writeback_raced: f[41],
        writeback_errors: f[42],
        writeback_requested_pages: f[43],
        charged_bytes: f[44],
    }
}

/// The text a large enough buffer gets, checked line by line against the figures.
fn reference(r: &Report, f: &[u64; 45]) -> String {
    let mut text = String::new();
    r.render(&mut text)
        .expect("a String never runs out of room");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 46, "{text}");
    assert!(text.ends_with('\n'));
    let mut want: Vec<u64> = f[..26].to_vec();
    want.push(r.pool_bytes.saturating_add(r.index_bytes)); // total_bytes
    want.extend_from_slice(&f[26..]);
    let mut names = std::collections::HashSet::new();
    for (line, want) in lines.iter().zip(want) {
        let (name, value) = line.split_once(' ').expect("name value");
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        assert!(names.insert(name), "{name} twice");
        assert_eq!(value.parse::<u64>(), Ok(want), "{line}");
    }
    assert!(
        text.len() <= SYSFS_PAGE,
        "the statistics must fit the sysfs page"
    );
    text
}

fuzz_target!(|input: Input| {
    let r = report(&input.figures);
    let text = reference(&r, &input.figures);

    // The module's path: a SliceWriter over part of a larger allocation.
    let len = usize::from(input.len) % (SYSFS_PAGE + 1);
    let start = usize::from(input.start);
    let mut mem = vec![CANARY; start + len + GUARD];
    let (written, ok) = {
        let mut w = SliceWriter::new(&mut mem[start..start + len]);
        let ok = r.render(&mut w).is_ok();
        (w.len(), ok)
    };
    assert!(written <= len);
    assert_eq!(ok, text.len() <= len, "len {len}, text {}", text.len());
    if ok {
        assert_eq!(written, text.len());
    }
    assert_eq!(&mem[start..start + written], &text.as_bytes()[..written]);
    assert!(
        mem[..start].iter().all(|&b| b == CANARY),
        "wrote before the slice"
    );
    assert!(
        mem[start + written..].iter().all(|&b| b == CANARY),
        "wrote past what it reports"
    );

    // The fixed-size buffer the tests use: always a prefix, complete if it fits.
    fn text_buf<const N: usize>(r: &Report, text: &str) {
        let mut b = TextBuf::<N>::new();
        let ok = r.render(&mut b).is_ok();
        assert_eq!(ok, text.len() <= N);
        assert!(text.starts_with(b.as_str()));
        if ok {
            assert_eq!(b.as_str(), text);
        }
    }
    text_buf::<0>(&r, &text);
    text_buf::<1>(&r, &text);
    text_buf::<300>(&r, &text);
    text_buf::<700>(&r, &text);
    text_buf::<1024>(&r, &text);
});
