//! Output files that appear only when complete.
//!
//! An [`AtomicFile`] writes to a hidden temporary file beside the destination and
//! renames it over the destination in [`AtomicFile::commit`]. The temporary file is
//! `tempfile`'s: created exclusively (`O_EXCL`: a file or symlink already at its name
//! is never opened or followed) under a random name (`.NAME.XXXXXX.tmp`), readable
//! by its owner only — a dump holds another process's memory. Dropped without a
//! commit — an error part-way, a panic — the temporary file is deleted, so a failed
//! command never leaves a partial file that looks like a result. A destination
//! ending in `.gz` is gzip-compressed.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use tempfile::NamedTempFile;

use crate::error::InputError;

enum Sink {
    Plain(BufWriter<NamedTempFile>),
    Gzip(GzEncoder<BufWriter<NamedTempFile>>),
}

/// A file written under a temporary name and renamed into place when complete.
pub struct AtomicFile {
    dest: PathBuf,
    sink: Option<Sink>,
}

impl AtomicFile {
    /// Start writing `dest` (gzip-compressed if its name ends in `.gz`).
    pub fn create(dest: &Path) -> Result<Self, InputError> {
        let name = dest
            .file_name()
            .ok_or_else(|| output_error(dest, io::Error::other("not a file name")))?;
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| output_error(dest, without_temp_path(e)))?;
        let file = BufWriter::new(temp);
        let sink = if name.to_string_lossy().ends_with(".gz") {
            Sink::Gzip(GzEncoder::new(file, Compression::default()))
        } else {
            Sink::Plain(file)
        };
        Ok(AtomicFile {
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
        let temp = match self.sink.take() {
            Some(Sink::Plain(w)) => w.into_inner().map_err(|e| e.into_error()),
            Some(Sink::Gzip(w)) => w
                .finish()
                .and_then(|w| w.into_inner().map_err(|e| e.into_error())),
            None => Err(io::Error::other("already committed")),
        }
        .map_err(|e| output_error(&dest, e))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| output_error(&dest, e))?;
        // Not committed, or the rename failed: `NamedTempFile` deletes the file when
        // dropped, so no partial file remains.
        temp.persist(&dest)
            .map(drop)
            .map_err(|e| output_error(&dest, e.error))
    }
}

/// `tempfile` appends ` at path "TEMP"` to its errors; the message names the
/// destination already, so keep what the OS said alone (on one line).
fn without_temp_path(error: io::Error) -> io::Error {
    let text = error.to_string();
    match text.split_once(" at path \"") {
        Some((os, _)) => io::Error::new(error.kind(), os.to_owned()),
        None => error,
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

    /// The temporary name the old `AtomicFile` used: `.NAME.tmp-PID`.
    fn old_predictable_temp(dest: &Path) -> PathBuf {
        let name = dest.file_name().unwrap().to_string_lossy();
        dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
    }

    #[test]
    fn a_symlink_planted_at_the_predictable_name_is_not_followed() {
        let dir = dir().join("symlink");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let dest = dir.join("c.pages");
        let planted = old_predictable_temp(&dest);
        std::os::unix::fs::symlink(&victim, &planted).unwrap();

        let mut file = AtomicFile::create(&dest).unwrap();
        file.write_all(&[4; 4096]).unwrap();
        file.commit().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(planted.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&dest).unwrap(), vec![4; 4096]);
        assert!(!dest.symlink_metadata().unwrap().file_type().is_symlink());
    }

    #[test]
    fn temporary_names_are_unpredictable_and_private() {
        use std::os::unix::fs::PermissionsExt;

        let dest = dir().join("d.pages");
        let temps = |file: &AtomicFile| -> PathBuf {
            match file.sink.as_ref() {
                Some(Sink::Plain(w)) => w.get_ref().path().to_path_buf(),
                _ => unreachable!("a plain file"),
            }
        };
        let (a, b) = (
            AtomicFile::create(&dest).unwrap(),
            AtomicFile::create(&dest).unwrap(),
        );
        let (path_a, path_b) = (temps(&a), temps(&b));
        assert_ne!(path_a, path_b);
        assert_ne!(path_a, old_predictable_temp(&dest));
        assert_eq!(path_a.parent(), dest.parent());
        let mode = std::fs::metadata(&path_a).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        drop((a, b));
        assert!(!path_a.exists() && !path_b.exists());
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
