//! The `foldswap` command; see the crate documentation of `foldswap_cli` and
//! `docs/cli.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use foldswap_cli::analyze::{Source, analyze, read_source};
use foldswap_cli::error::InputError;
use foldswap_cli::output::AtomicFile;
use foldswap_cli::plot::render_svg;
use foldswap_cli::procmem::{check_processes_exist, read_process_pages};
use foldswap_cli::report::{human_bytes, render_table, thousands};
use foldswap_cli::scan::{Budget, scan};
use foldswap_cli::scan_table::render_scan_table;
use foldswap_cli::strategy::all_strategies;
use indicatif::{ProgressBar, ProgressStyle};

/// The sample corpus `analyze` reads when given no input, under `samples/`.
const SAMPLE_CORPUS: &str = "samples/workers.pages.gz";
/// Inputs smaller than this many page operations get no progress bar.
const PROGRESS_MIN_OPERATIONS: u64 = 100_000;

/// What foldswap (dedup + patch + compress) saves on real memory, against zswap/zram
/// (compress only) and KSM (dedup only).
#[derive(Parser)]
#[command(name = "foldswap", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store every page with each strategy, load it back, verify it, and report
    /// counts, bytes held, ratios and time per page.
    Analyze(AnalyzeArgs),
    /// Write the anonymous resident pages of live processes as a raw page corpus.
    Dump(DumpArgs),
    /// Run the resident face (scan ladder + merge trees) over live processes for N
    /// passes and report what KSM-style merging would save, pass by pass.
    Scan(ScanArgs),
}

#[derive(Args)]
struct ScanArgs {
    /// The processes to scan (only these).
    #[arg(long, value_name = "PID", num_args = 1.., required = true)]
    pid: Vec<u32>,
    /// Ladder rounds to run.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    passes: u64,
    /// The ladder's CPU budget: `every` covers every page each pass; the others are
    /// UKSM's governors (a pass then samples pages with a stride).
    #[arg(long, value_enum, default_value_t = Budget::Every)]
    budget: Budget,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AnalyzeArgs {
    /// A corpus of raw 4096-byte pages (.pages, or gzip-compressed .pages.gz).
    /// Default: the sample corpus shipped in samples/.
    #[arg(value_name = "PATH", conflicts_with = "pid")]
    path: Option<PathBuf>,
    /// Analyze the anonymous resident pages of these live processes instead.
    #[arg(long, value_name = "PID", num_args = 1..)]
    pid: Vec<u32>,
    /// Print the report as JSON (fields documented in docs/cli.md).
    #[arg(long)]
    json: bool,
    /// Also write an SVG bar chart of the bytes each strategy holds.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Refuse an input of more than N pages (default: 4 GiB of pages). Reading
    /// stops as soon as the input passes N, before anything past it is held.
    #[arg(long, value_name = "N", default_value_t = foldswap_corpus::DEFAULT_MAX_PAGES)]
    max_pages: usize,
}

#[derive(Args)]
struct DumpArgs {
    /// The processes to read (only these).
    #[arg(long, value_name = "PID", num_args = 1.., required = true)]
    pid: Vec<u32>,
    /// Output corpus; gzip-compressed if it ends in .gz.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => run_analyze(args),
        Command::Dump(args) => run_dump(args).map_err(anyhow::Error::from),
        Command::Scan(args) => run_scan(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<InputError>() {
            // Its message already names the cause: print it alone, on one line.
            Some(input) => {
                eprintln!("foldswap: {input}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("foldswap: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    let source = if !args.pid.is_empty() {
        Source::Processes(args.pid)
    } else if let Some(path) = args.path {
        Source::File(path)
    } else {
        Source::File(sample_corpus()?)
    };
    // Fail on an unwritable plot path before the work, not after it.
    let plot = args.plot.as_deref().map(AtomicFile::create).transpose()?;
    let reading = ProgressBar::new_spinner().with_message(format!("reading {}", source.label()));
    reading.enable_steady_tick(core::time::Duration::from_millis(100));
    let corpus = read_source(&source, args.max_pages);
    reading.finish_and_clear();
    let corpus = corpus?;
    let strategies = all_strategies()?;
    let operations = 2 * corpus.len() as u64 * strategies.len() as u64;
    let progress = if operations >= PROGRESS_MIN_OPERATIONS {
        let bar = ProgressBar::new(operations);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:32} [{bar:40}] {percent:>3}% ({eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = analyze(&source.label(), &corpus, strategies, &progress)?;
    progress.finish_and_clear();

    if let (Some(mut file), Some(path)) = (plot, &args.plot) {
        file.write_all(render_svg(&report).as_bytes())?;
        file.commit()?;
        eprintln!("plot written to {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    Ok(())
}

fn run_scan(args: ScanArgs) -> anyhow::Result<()> {
    let report = scan(&args.pid, args.passes, args.budget)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_scan_table(&report));
    }
    Ok(())
}

/// The shipped sample corpus: beside the crate's source, or under the current
/// directory.
fn sample_corpus() -> Result<PathBuf, InputError> {
    let beside_source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(SAMPLE_CORPUS);
    [beside_source, PathBuf::from(SAMPLE_CORPUS)]
        .into_iter()
        .find(|path| path.is_file())
        .map(|path| path.canonicalize().unwrap_or(path))
        .ok_or_else(|| InputError::NoSample(SAMPLE_CORPUS.to_owned()))
}

fn run_dump(args: DumpArgs) -> Result<(), InputError> {
    check_processes_exist(&args.pid)?;
    let mut file = AtomicFile::create(&args.output)?;
    let mut total = 0u64;
    for &pid in &args.pid {
        let mut write_error = None;
        let pages = read_process_pages(pid, &mut |page| {
            if write_error.is_none() {
                write_error = file.write_all(page).err();
            }
        })?;
        if let Some(error) = write_error {
            return Err(error);
        }
        eprintln!("process {pid}: {} pages", thousands(pages));
        total += pages;
    }
    if total == 0 {
        return Err(InputError::Empty(Source::Processes(args.pid).label()));
    }
    file.commit()?;
    eprintln!(
        "wrote {} pages ({}) to {}",
        thousands(total),
        human_bytes(total * 4096),
        args.output.display()
    );
    Ok(())
}
