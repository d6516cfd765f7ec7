//! Errors caused by the input the user gave: they exit with code 2.

use std::io;
use std::path::PathBuf;

use foldswap_corpus::CorpusError;

/// The user's input cannot be used. Printed as one line; the command exits with 2
/// and leaves no output file behind.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A corpus file could not be read or is malformed.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// The process does not exist (or exited while it was being read).
    #[error("process {pid}: no such process")]
    NoSuchProcess {
        /// The process id the user named.
        pid: u32,
    },
    /// The process is a kernel thread: it has no user memory to read.
    #[error("process {pid} ({name}): a kernel thread, it has no user memory to read")]
    KernelThread {
        /// The process id the user named.
        pid: u32,
        /// Its command name.
        name: String,
    },
    /// A file under `/proc/PID/` could not be opened or read.
    #[error("process {pid}: cannot read {what}: {source}")]
    ProcessUnreadable {
        /// The process id the user named.
        pid: u32,
        /// Which file or address range.
        what: String,
        /// What the OS said.
        source: io::Error,
    },
    /// `/proc/PID/maps` has a line that does not parse.
    #[error("process {pid}: malformed line in /proc/{pid}/maps: {line:?}")]
    MalformedMaps {
        /// The process id.
        pid: u32,
        /// The offending line.
        line: String,
    },
    /// `analyze` was given no input and the shipped sample corpus is not there.
    #[error("no PATH given and the sample corpus {0} was not found")]
    NoSample(String),
    /// No pages at all to analyze or dump.
    #[error("{0}: no pages")]
    Empty(String),
    /// The output file could not be written.
    #[error("{path}: cannot write: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}
