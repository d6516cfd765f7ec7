//! Output files that appear only when complete.
//!
//! An [`AtomicFile`] writes to a hidden temporary name beside the destination
//! (`.NAME.tmp-PID`) and renames it over the destination in [`AtomicFile::commit`].
//! Dropped without a commit — an error part-way, a panic — it deletes the
//! temporary file, so a failed command never leaves a partial file that looks like
//! a result. A destination ending in `.gz` is gzip-compressed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::error::InputError;

enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

/// A file written under a temporary name and renamed into place when complete.
pub struct AtomicFile {
    temp: PathBuf,
    dest: PathBuf,
    sink: Option<Sink>,
}

impl AtomicFile {
    /// Start writing `dest` (gzip-compressed if its name ends in `.gz`).
    pub fn create(dest: &Path) -> Result<Self, InputError> {
        let name = dest
            .file_name()
            .ok_or_else(|| output_error(dest, io::Error::other("not a file name")))?;
        let temp = dest.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = BufWriter::new(File::create(&temp).map_err(|e| output_error(dest, e))?);
        let sink = if name.to_string_lossy().ends_with(".gz") {
            Sink::Gzip(GzEncoder::new(file, Compression::default()))
        } else {
            Sink::Plain(file)
        };
        Ok(AtomicFile {
            temp,
            dest: dest.to_path_buf(),
            sink: Some(sink),
        })
    }

    /// Append `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), InputError> {
        let result = match self.sink.as_mut() {
            Some(Sink::Plain(w)) => w.write_all(bytes),
            Some(Sink::Gzip(w)) => w.write_all(bytes),
            None => Err(io::Error::other("already committed")),
        };
        result.map_err(|e| output_error(&self.dest, e))
    }

    /// Finish the file and move it into place.
    pub fn commit(mut self) -> Result<(), InputError> {
        let dest = self.dest.clone();
        let file = match self.sink.take() {
            Some(Sink::Plain(w)) => w.into_inner().map_err(|e| e.into_error()),
            Some(Sink::Gzip(w)) => w
                .finish()
                .and_then(|w| w.into_inner().map_err(|e| e.into_error())),
            None => Err(io::Error::other("already committed")),
        }
        .map_err(|e| output_error(&dest, e))?;
        file.sync_all().map_err(|e| output_error(&dest, e))?;
        std::fs::rename(&self.temp, &dest).map_err(|e| output_error(&dest, e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed (or the rename failed): the partial file must not remain.
        let _ = std::fs::remove_file(&self.temp);
    }
}

fn output_error(path: &Path, source: io::Error) -> InputError {
    InputError::Output {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("foldswap-cli-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appears_only_on_commit() {
        let dest = dir().join("a.pages");
        let _ = std::fs::remove_file(&dest);
        let mut file = AtomicFile::create(&dest).unwrap();
        file.write_all(&[1; 4096]).unwrap();
        assert!(!dest.exists());
        file.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), vec![1; 4096]);
    }

    #[test]
    fn dropped_leaves_nothing_and_gzip_round_trips() {
        let dest = dir().join("b.pages.gz");
        let _ = std::fs::remove_file(&dest);
        let mut file = AtomicFile::create(&dest).unwrap();
        file.write_all(&[2; 4096]).unwrap();
        drop(file);
        let leftovers: Vec<_> = std::fs::read_dir(dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("b.pages.gz"))
            .collect();
        assert!(leftovers.is_empty());

        let mut file = AtomicFile::create(&dest).unwrap();
        file.write_all(&[3; 8192]).unwrap();
        file.commit().unwrap();
        let corpus = foldswap_corpus::read_corpus(&dest).unwrap();
        assert_eq!(corpus.as_bytes(), &[3; 8192][..]);
    }
}
