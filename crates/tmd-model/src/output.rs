//! Writing outputs so that nothing half-written ever sits under the final name.
//!
//! - [`write_file_atomic`]: a file is written to a hidden temporary name beside it
//!   (`.name.tmp-PID`), flushed and fsynced, then renamed over `path`; on error the temporary file
//!   is removed and the error is returned unchanged (its kind intact, so a full disk reads
//!   "No space left on device").
//! - [`write_dir_atomic`]: the same for a folder of files (PNG frames): the files are written into a
//!   temporary folder that replaces `path` whole once complete, so an existing folder is never
//!   mixed with a new one; a folder holding anything but files the caller may replace is refused.
//! - [`fail_writes_after`]: test-only fault injection: every writer opened through this module on
//!   the calling thread fails with [`ErrorKind::StorageFull`] once the given number of bytes has been
//!   written in total, as a full disk does, so tests need neither root nor a small filesystem.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

thread_local! {
    static BUDGET: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Makes every writer of this module on the calling thread fail with a "no space left on device"
/// error ([`ErrorKind::StorageFull`]) after `bytes` more bytes (`None` lifts the limit). For tests.
pub fn fail_writes_after(bytes: Option<u64>) {
    BUDGET.with(|b| b.set(bytes));
}

/// The error a full disk gives ([`ErrorKind::StorageFull`]), as [`fail_writes_after`] injects it.
pub fn storage_full() -> io::Error {
    io::Error::new(
        ErrorKind::StorageFull,
        "No space left on device (injected write failure)",
    )
}

/// A writer that honours [`fail_writes_after`] and remembers its first error, so an error an
/// encoder swallows (a trailer written on drop) still fails the output.
#[derive(Debug)]
pub struct Guarded<W: Write> {
    inner: W,
    first_error: Option<(ErrorKind, String)>,
}

impl<W: Write> Guarded<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            first_error: None,
        }
    }
    /// The first error any write or flush returned, if one did.
    pub fn check(&self) -> io::Result<()> {
        match &self.first_error {
            None => Ok(()),
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
        }
    }
    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if self.first_error.is_none() && e.kind() != ErrorKind::Interrupted {
                self.first_error = Some((e.kind(), e.to_string()));
            }
        }
        r
    }
}

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let allowed = BUDGET.with(|b| match b.get() {
            None => Ok(buf.len()),
            Some(0) if !buf.is_empty() => Err(storage_full()),
            Some(left) => {
                let n = (left.min(buf.len() as u64)) as usize;
                b.set(Some(left - n as u64));
                Ok(n)
            }
        });
        let r = allowed.and_then(|n| self.inner.write(&buf[..n]));
        self.note(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

/// The hidden temporary name beside `path`: `.name.tmp-PID`.
pub fn temp_name(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Writes `path` through `write` into a temporary file that is renamed over `path` once `write`
/// returned and the data is flushed and synced. On any error the temporary file is removed and
/// `path` is untouched.
pub fn write_file_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_name(path, "tmp");
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut w = Guarded::new(BufWriter::new(file));
        write(&mut w)?;
        w.flush()?;
        w.check()?;
        let file = w.into_inner().into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes one file inside the folder that [`write_dir_atomic`] is building (no rename of its own:
/// the folder is renamed whole).
pub fn write_file_in(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let file = File::create(dir.join(name))?;
    let mut w = Guarded::new(BufWriter::new(file));
    write(&mut w)?;
    w.flush()?;
    w.check()?;
    let file = w.into_inner().into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Builds the folder `path` through `fill`, which writes its files into the temporary folder it is
/// given (with [`write_file_in`]); once `fill` returns, the temporary folder replaces `path` whole.
///
/// An existing `path` must be a folder whose every entry satisfies `replaceable` (e.g. earlier
/// frames): anything else is refused with [`ErrorKind::AlreadyExists`] before any work, so no
/// foreign file is ever deleted. On error the temporary folder is removed and `path` is untouched.
pub fn write_dir_atomic(
    path: &Path,
    replaceable: impl Fn(&str) -> bool,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    check_dir_replaceable(path, &replaceable)?;
    let tmp = temp_name(path, "tmp");
    let old = temp_name(path, "old");
    let _ = fs::remove_dir_all(&tmp);
    let result = (|| {
        fs::create_dir(&tmp)?;
        fill(&tmp)?;
        File::open(&tmp)?.sync_all()?;
        if path.exists() {
            let _ = fs::remove_dir_all(&old);
            fs::rename(path, &old)?;
            if let Err(e) = fs::rename(&tmp, path) {
                let _ = fs::rename(&old, path);
                return Err(e);
            }
            let _ = fs::remove_dir_all(&old);
            Ok(())
        } else {
            fs::rename(&tmp, path)
        }
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// `Ok` if `path` does not exist or is a folder whose every entry satisfies `replaceable`.
pub fn check_dir_replaceable(path: &Path, replaceable: &dyn Fn(&str) -> bool) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.is_dir() {
        return Err(io::Error::new(
            ErrorKind::AlreadyExists,
            "exists and is not a folder; choose another output name",
        ));
    }
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() || !replaceable(&name) {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "the folder exists and holds '{name}', which is not an output this command \
                     writes; it would be replaced whole, so choose a new or empty folder"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks, before any work, that the folder an output `path` goes into exists and is a folder.
pub fn check_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Ok(()),
    };
    match fs::metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            ErrorKind::NotADirectory,
            format!("{} is not a folder", parent.display()),
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(io::Error::new(
            ErrorKind::NotFound,
            format!(
                "the folder {} does not exist; create it first",
                parent.display()
            ),
        )),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh scratch directory, removed when the returned guard drops (at the end of the test).
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("tmd-output-{name}-"))
            .tempdir()
            .unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failing_file_write_leaves_the_old_file_and_no_temporary() {
        let tmp = scratch("file");
        let dir = tmp.path();
        let path = dir.join("a.bin");
        fs::write(&path, b"old").unwrap();
        for limit in [0u64, 1, 100, 10_000] {
            fail_writes_after(Some(limit));
            let err = write_file_atomic(&path, |w: &mut dyn Write| w.write_all(&[7u8; 20_000]))
                .unwrap_err();
            fail_writes_after(None);
            assert_eq!(err.kind(), ErrorKind::StorageFull, "{err}");
            assert!(err.to_string().contains("No space left"), "{err}");
            assert_eq!(fs::read(&path).unwrap(), b"old");
            assert_eq!(entries(dir), vec!["a.bin"]);
        }
        write_file_atomic(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir), vec!["a.bin"]);
    }

    #[test]
    fn a_folder_is_replaced_whole_or_not_at_all() {
        let tmp = scratch("dir");
        let dir = tmp.path();
        let out = dir.join("frames");
        let is_frame = |n: &str| n.starts_with("f");
        let fill = |count: usize| {
            move |tmp: &Path| -> io::Result<()> {
                for i in 0..count {
                    write_file_in(tmp, &format!("f{i}"), |w| w.write_all(&[1u8; 100]))?;
                }
                Ok(())
            }
        };
        write_dir_atomic(&out, is_frame, fill(5)).unwrap();
        assert_eq!(entries(&out).len(), 5);
        // Fails after two files: the five old ones stay, nothing else anywhere.
        fail_writes_after(Some(250));
        let err = write_dir_atomic(&out, is_frame, fill(3)).unwrap_err();
        fail_writes_after(None);
        assert_eq!(err.kind(), ErrorKind::StorageFull);
        assert_eq!(entries(&out).len(), 5);
        assert_eq!(entries(dir), vec!["frames"]);
        // Succeeds with fewer files: exactly the new ones, no mix.
        write_dir_atomic(&out, is_frame, fill(2)).unwrap();
        assert_eq!(entries(&out), vec!["f0", "f1"]);
        assert_eq!(entries(dir), vec!["frames"]);
        // A folder with a foreign file is refused and left alone.
        fs::write(out.join("notes.txt"), b"mine").unwrap();
        let err = write_dir_atomic(&out, is_frame, fill(1)).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert_eq!(entries(&out), vec!["f0", "f1", "notes.txt"]);
    }

    #[test]
    fn a_missing_parent_folder_is_named() {
        let tmp = scratch("parent");
        let dir = tmp.path();
        let err = check_parent_dir(&dir.join("nope/clip.gif")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        check_parent_dir(&dir.join("clip.gif")).unwrap();
        check_parent_dir(Path::new("clip.gif")).unwrap();
    }
}
