//! The `/proc/PID/` parsers of `foldswap dump`/`scan` on arbitrary bytes: every
//! line as a `maps` line, the text as a `stat` file, and the bytes as a block of
//! `pagemap` entries. They never panic; what they accept is consistent (a kept
//! mapping does not end before it starts; present runs are in order, disjoint,
//! inside the block and made of present entries only).
#![no_main]

use foldswap_cli::procmem::{page_present, parse_stat, present_runs, private_anonymous_mapping};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    for line in text.lines() {
        if let Ok(Some(mapping)) = private_anonymous_mapping(line) {
            assert!(mapping.start <= mapping.end, "{line:?}");
        }
    }
    if let Some(stat) = parse_stat(&text) {
        assert!(text.contains(&stat.name));
    }

    let entries = input.len() / 8;
    let mut next_free = 0;
    for (first, pages) in present_runs(input) {
        assert!(pages >= 1 && first >= next_free && first + pages <= entries);
        for index in first..first + pages {
            let entry = input[index * 8..index * 8 + 8].try_into().unwrap();
            assert!(page_present(u64::from_le_bytes(entry)));
        }
        next_free = first + pages + 1;
    }
});
