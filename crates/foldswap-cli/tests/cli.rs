//! End-to-end tests: they run the `foldswap` binary as a user would.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const PAGE: usize = 4096;

fn foldswap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_foldswap"))
}

/// A fresh directory for one test.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foldswap-cli-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// 12 pages: 3 zero, 2 filled with one non-zero 64-bit word (its halves differ), 4
/// copies of a text page, one
/// other text page, 2 different pages of noise.
fn small_corpus() -> Vec<u8> {
    let text = |phrase: &[u8]| -> Vec<u8> { phrase.iter().copied().cycle().take(PAGE).collect() };
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = || -> Vec<u8> {
        (0..PAGE)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let zero = vec![0u8; PAGE];
    let filled: Vec<u8> = 0x0102_0304_0506_0708_u64
        .to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(PAGE)
        .collect();
    let repeated = text(b"a line of parsed text held by a worker; ");
    let other = text(b"another table row, another index entry | ");
    let (noise_a, noise_b) = (noise(), noise());
    [
        &zero, &repeated, &filled, &noise_a, &repeated, &zero, &other, &repeated, &filled,
        &noise_b, &zero, &repeated,
    ]
    .map(Vec::as_slice)
    .concat()
}

fn run(command: &mut Command) -> Output {
    command.output().expect("foldswap runs")
}

/// Exit code 2 and exactly one line on stderr containing every one of `words`.
fn assert_input_error(output: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr:?}"
    );
    for word in words {
        assert!(stderr.contains(word), "{word:?} not in {stderr:?}");
        assert_eq!(
            stderr.matches(word).count(),
            1,
            "{word:?} repeated in {stderr:?}"
        );
    }
    assert!(
        output.stdout.is_empty(),
        "stdout on error: {:?}",
        output.stdout
    );
}

fn field(row: &Value, name: &str) -> u64 {
    row[name]
        .as_u64()
        .unwrap_or_else(|| panic!("field {name} missing or not a number in {row}"))
}

#[test]
fn analyze_json_counts_every_page_of_a_small_corpus() {
    let dir = test_dir("json");
    let corpus = small_corpus();
    let raw = dir.join("small.pages");
    let gz = dir.join("small.pages.gz");
    std::fs::write(&raw, &corpus).unwrap();
    std::fs::write(&gz, gzip(&corpus)).unwrap();

    for path in [&raw, &gz] {
        let output = run(foldswap().arg("analyze").arg(path).arg("--json"));
        assert!(output.status.success(), "{output:?}");
        let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
        assert_eq!(report["schema"], "foldswap-analyze/2");
        assert_eq!(report["input"]["source"], path.display().to_string());
        assert_eq!(field(&report["input"], "pages"), 12);
        assert_eq!(field(&report["input"], "bytes"), 12 * PAGE as u64);

        let rows = report["strategies"].as_array().unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "foldswap",
                "foldswap-lz4",
                "compress-only",
                "pool-lz4",
                "dedup-only"
            ]
        );
        for row in rows {
            assert_eq!(field(row, "pages"), 12);
            assert_eq!(field(row, "verified_pages"), 12);
            assert_eq!(
                field(row, "bytes_held"),
                field(row, "data_bytes") + field(row, "metadata_bytes")
            );
            let ratio = row["ratio"].as_f64().unwrap();
            let expected = (12 * PAGE) as f64 / field(row, "bytes_held") as f64;
            assert!((ratio - expected).abs() < 1e-9);
            for timing in ["store_ns_per_page", "load_ns_per_page"] {
                field(row, timing);
            }
            assert!(row["model"].as_str().is_some_and(|m| !m.is_empty()));
            let stages = row["stages"].as_array().unwrap();
            assert!(!stages.is_empty());
            for stage in stages {
                assert!(stage["name"].as_str().is_some());
                field(stage, "ns_per_page");
            }
        }
        let counts = |row: &Value| {
            [
                "zero",
                "same_filled",
                "identical",
                "patched",
                "compressed",
                "raw",
            ]
            .map(|f| field(row, f))
        };
        // The backend: zero pages free, noise raw, every text page compressed once
        // or referenced (byte-verified) — with and without its scanner. Its
        // same-filled pages repeat a 32-bit word: the two pages of one 64-bit word
        // with different halves are content, compressed once and then shared.
        for row in &rows[..2] {
            let [zero, same, identical, patched, compressed, raw] = counts(row);
            assert_eq!((zero, same, raw), (3, 0, 2), "{row}");
            assert_eq!(identical + patched + compressed, 7, "{row}");
            assert!(identical >= 4, "{row}");
        }
        // zswap/zram: fills free, text compressed, noise raw.
        assert_eq!(counts(&rows[2]), [3, 2, 0, 0, 5, 2]);
        let vs = |row: &Value| row["held_vs_compress_only"].as_f64().unwrap();
        assert!((vs(&rows[2]) - 1.0).abs() < 1e-12);
        let expected = field(&rows[4], "bytes_held") as f64 / field(&rows[2], "bytes_held") as f64;
        assert!((vs(&rows[4]) - expected).abs() < 1e-9);
        // The real pool with the same policy stores the same way.
        assert_eq!(counts(&rows[3]), [3, 2, 0, 0, 5, 2]);
        // KSM: 6 distinct contents kept, the other 6 pages merged.
        assert_eq!(counts(&rows[4]), [0, 0, 6, 0, 0, 6]);
        assert_eq!(field(&rows[4], "data_bytes"), 6 * PAGE as u64);
        assert_eq!(field(&rows[4], "metadata_bytes"), 12 * 64 + 3 * 64);
        // Noise pages stay raw in compress-only; the text pages take little.
        let compress_data = field(&rows[2], "data_bytes");
        assert!(compress_data >= 2 * PAGE as u64 && compress_data < 3 * PAGE as u64);
    }
}

#[test]
fn analyze_table_and_plot_read_well() {
    let dir = test_dir("table");
    let path = dir.join("small.pages");
    std::fs::write(&path, small_corpus()).unwrap();
    let plot = dir.join("bytes.svg");
    let output = run(foldswap()
        .arg("analyze")
        .arg(&path)
        .arg("--plot")
        .arg(&plot));
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "12 pages (48.0 KiB)",
        "how the pages were stored",
        "same-filled",
        "store ns/page",
        "compress-only",
        "dedup-only",
    ] {
        assert!(table.contains(expected), "{expected:?} not in\n{table}");
    }
    let widest = table.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 100, "a line of {widest} columns:\n{table}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for label in [
        "input (raw)",
        "compress-only",
        "dedup-only",
        "Bytes held for 12 pages",
    ] {
        assert!(svg.contains(label), "{label:?} not in the plot");
    }
}

#[test]
fn analyze_without_arguments_reads_the_shipped_sample() {
    let output = run(foldswap().args(["analyze", "--json"]));
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let source = report["input"]["source"].as_str().unwrap();
    assert!(source.ends_with("samples/workers.pages.gz"), "{source}");
    assert!(field(&report["input"], "pages") > 1000);
}

#[test]
fn bad_corpus_files_are_one_line_errors_with_code_2() {
    let dir = test_dir("bad");
    let partial = dir.join("partial.pages");
    std::fs::write(&partial, vec![1u8; 5000]).unwrap();
    let output = run(foldswap().arg("analyze").arg(&partial));
    assert_input_error(
        &output,
        &["partial.pages", "5000", "not a multiple of 4096"],
    );

    let truncated = dir.join("truncated.pages.gz");
    let gz = gzip(&small_corpus());
    std::fs::write(&truncated, &gz[..gz.len() / 2]).unwrap();
    let output = run(foldswap().arg("analyze").arg(&truncated));
    assert_input_error(&output, &["truncated.pages.gz", "truncated gzip"]);

    let missing = dir.join("missing.pages");
    let output = run(foldswap().arg("analyze").arg(&missing));
    assert_input_error(&output, &["missing.pages", "No such file"]);

    let output = run(foldswap().arg("analyze").arg(&dir));
    assert_input_error(&output, &["Is a directory"]);

    let empty = dir.join("empty.pages");
    std::fs::write(&empty, b"").unwrap();
    let output = run(foldswap().arg("analyze").arg(&empty));
    assert_input_error(&output, &["empty.pages", "no pages"]);

    // An unwritable plot path: the analysis is fine, the output is not.
    let ok = dir.join("ok.pages");
    std::fs::write(&ok, small_corpus()).unwrap();
    let output = run(foldswap()
        .arg("analyze")
        .arg(&ok)
        .arg("--plot")
        .arg(dir.join("no/such/dir/p.svg")));
    assert_input_error(&output, &["p.svg", "cannot write"]);
}

#[test]
fn the_name_decides_gzip_and_max_pages_bounds_the_input() {
    let dir = test_dir("bound");
    // Raw pages that happen to start with gzip's magic bytes are raw pages.
    let mut magic = small_corpus();
    magic[..4].copy_from_slice(&[0x1f, 0x8b, 0x08, 0x00]);
    let raw = dir.join("magic.pages");
    std::fs::write(&raw, &magic).unwrap();
    let output = run(foldswap().arg("analyze").arg(&raw).arg("--json"));
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(field(&report["input"], "pages"), 12);

    let gz = dir.join("small.pages.gz");
    std::fs::write(&gz, gzip(&small_corpus())).unwrap();
    let output = run(foldswap()
        .arg("analyze")
        .arg(&gz)
        .args(["--max-pages", "11"]));
    assert_input_error(&output, &["small.pages.gz", "more than 11 pages"]);
    let output = run(foldswap()
        .arg("analyze")
        .arg(&gz)
        .args(["--max-pages", "12", "--json"]));
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn usage_errors_keep_clap_exit_code_2() {
    let output = run(foldswap().args(["analyze", "--bogus"]));
    assert_eq!(output.status.code(), Some(2));
    let output = run(foldswap().args(["dump", "--pid", "1"]));
    assert_eq!(output.status.code(), Some(2));
    let output = run(foldswap().args(["analyze", "x.pages", "--pid", "1"]));
    assert_eq!(output.status.code(), Some(2));
}

/// A process that has exited (and been reaped): its PID is gone.
fn gone_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// No file, and no temporary file, left in `dir` except `keep`.
fn assert_no_output(dir: &Path, keep: &[&str]) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !keep.contains(&name.as_str()))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A kernel thread visible in `/proc` (kthreadd is PID 2 outside containers).
fn kernel_thread() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            foldswap_cli::procmem::parse_stat(
                &std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
            )
            .is_some_and(|stat| stat.is_kernel_thread())
        })
}

#[test]
fn a_kernel_thread_is_named_as_one_and_leaves_no_file() {
    let Some(pid) = kernel_thread() else {
        // A PID namespace without kernel threads in it: nothing to name.
        eprintln!("no kernel thread visible in /proc");
        return;
    };
    let dir = test_dir("kthread");
    let pid = pid.to_string();
    let out = dir.join("k.pages");
    for command in [
        foldswap().args(["analyze", "--pid", &pid]),
        foldswap().args(["dump", "--pid", &pid, "-o"]).arg(&out),
        foldswap().args(["scan", "--pid", &pid]),
    ] {
        let output = run(command);
        assert_input_error(
            &output,
            &[
                &format!("process {pid} ("),
                "a kernel thread",
                "no user memory",
            ],
        );
    }
    assert_no_output(&dir, &[]);
}

#[test]
fn a_gone_process_is_a_one_line_error_and_leaves_no_file() {
    let dir = test_dir("gone");
    let pid = gone_pid();
    let output = run(foldswap().args(["analyze", "--pid", &pid.to_string()]));
    assert_input_error(&output, &[&format!("process {pid}"), "no such process"]);

    let out = dir.join("gone.pages");
    let output = run(foldswap()
        .args([
            "dump",
            "--pid",
            &std::process::id().to_string(),
            &pid.to_string(),
        ])
        .arg("-o")
        .arg(&out));
    assert_input_error(&output, &[&format!("process {pid}"), "no such process"]);
    assert_no_output(&dir, &[]);
}

/// The real Python interpreter (not a wrapper script, whose PID would not be the
/// worker's).
fn python() -> String {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The page the marker child writes.
fn marker_page() -> Vec<u8> {
    (0..PAGE).map(|i| ((i * 7 + 13) % 256) as u8).collect()
}

/// A child that writes `copies` marker pages into a private anonymous mapping and
/// waits (until its stdin closes).
fn marker_child(copies: usize) -> Child {
    let script = "import mmap, sys\n\
                  n = int(sys.argv[1])\n\
                  m = mmap.mmap(-1, (n + 3) * 4096, flags=mmap.MAP_PRIVATE)\n\
                  for k in range(n):\n\
                  \x20   m[(k + 1) * 4096:(k + 2) * 4096] = bytes((i * 7 + 13) % 256 for i in range(4096))\n\
                  print('ready', flush=True)\n\
                  sys.stdin.read()\n";
    let mut child = Command::new(python())
        .args(["-c", script, &copies.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

fn end(mut child: Child) {
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn dump_writes_the_marker_page_of_a_child() {
    let dir = test_dir("dump");
    let child = marker_child(1);
    let pid = child.id().to_string();
    let out = dir.join("child.pages");
    let output = run(foldswap().args(["dump", "--pid", &pid]).arg("-o").arg(&out));
    let gz = dir.join("child.pages.gz");
    let output_gz = run(foldswap().args(["dump", "--pid", &pid]).arg("-o").arg(&gz));
    let live = run(foldswap().args(["analyze", "--json", "--pid", &pid]));
    end(child);
    assert!(live.status.success(), "{live:?}");
    let report: Value = serde_json::from_slice(&live.stdout).unwrap();
    assert_eq!(report["input"]["source"], format!("pid {pid}"));
    assert!(field(&report["input"], "pages") > 10);
    assert!(output.status.success(), "{output:?}");
    assert!(output_gz.status.success(), "{output_gz:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("process {pid}:")), "{stderr}");

    let bytes = std::fs::read(&out).unwrap();
    assert!(!bytes.is_empty() && bytes.len().is_multiple_of(PAGE));
    let marker = marker_page();
    let markers = bytes
        .chunks_exact(PAGE)
        .filter(|page| *page == &marker[..])
        .count();
    assert_eq!(markers, 1, "the marker page must be in the dump once");
    // The pages of the mapping that were never touched are not resident: not dumped.
    assert_no_output(&dir, &["child.pages", "child.pages.gz"]);

    // The dump is a corpus `analyze` reads, gzip or not.
    let output = run(foldswap().arg("analyze").arg(&gz).arg("--json"));
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(field(&report["input"], "pages") > 10);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

#[test]
fn unreadable_process_memory_is_a_one_line_error_and_leaves_no_file() {
    let dir = test_dir("unreadable");
    if is_root() {
        // root reads every process: read a root-owned child as `nobody` instead.
        let mut perms = std::fs::metadata(&dir).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
        std::fs::set_permissions(&dir, perms).unwrap();
        // A copy of the binary `nobody` can run whatever the checkout's permissions.
        let binary = dir.join("foldswap");
        std::fs::copy(env!("CARGO_BIN_EXE_foldswap"), &binary).unwrap();
        let child = marker_child(1);
        let pid = child.id().to_string();
        let output = run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&binary)
            .args(["dump", "--pid", &pid, "-o"])
            .arg(dir.join("x.pages")));
        end(child);
        assert_input_error(&output, &[&format!("process {pid}: cannot read"), "denied"]);
        std::fs::remove_file(&binary).unwrap();
    } else {
        let output = run(foldswap()
            .args(["dump", "--pid", "1", "-o"])
            .arg(dir.join("x.pages")));
        assert_input_error(&output, &["process 1: cannot read", "denied"]);
    }
    assert_no_output(&dir, &[]);
}

#[test]
fn scan_finds_identical_pages_across_children() {
    let children = [marker_child(4), marker_child(4)];
    let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    let output = run(foldswap()
        .args(["scan", "--passes", "4", "--json", "--pid"])
        .args(&pids));
    let table = run(foldswap()
        .args(["scan", "--passes", "1", "--pid"])
        .args(&pids));
    children.into_iter().for_each(end);
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["schema"], "foldswap-scan/1");
    let passes = report["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 4);
    // The first pass only records checksums (KSM's volatility gate): nothing merges.
    assert_eq!(field(&passes[0], "pages_sharing"), 0);
    assert!(field(&passes[0], "scanned") > 8);
    // Then the 8 marker pages come to share one page (more duplicates may exist).
    let last = &passes[3];
    assert!(field(last, "pages_shared") >= 1);
    assert!(field(last, "pages_sharing") >= 7, "{last}");
    assert_eq!(
        field(last, "saved_bytes"),
        field(last, "pages_sharing") * 4096
    );
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("pages mapped") && text.contains("sharing"),
        "{text}"
    );
}

#[test]
fn scan_of_a_gone_process_is_a_one_line_error() {
    let pid = gone_pid();
    let output = run(foldswap().args(["scan", "--passes", "1", "--pid", &pid.to_string()]));
    assert_input_error(&output, &[&format!("process {pid}"), "no such process"]);
    let output = run(foldswap().args(["scan", "--passes", "0", "--pid", "1"]));
    assert_eq!(output.status.code(), Some(2));
}
