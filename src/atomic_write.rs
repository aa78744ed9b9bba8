//! Files written whole or not at all: a temporary file in the same directory, flushed to
//! disk, then renamed over the target, so that a process killed mid-write leaves the
//! previous file intact (and a temporary file that the next run removes).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of the temporary files [`write_atomically`] writes before renaming them.
const TEMPORARY_PREFIX: &str = ".dwconv-tmp-";

/// Whether `name` is a temporary file of [`write_atomically`] (left by a killed process).
#[cfg(feature = "pipeline")]
pub(crate) fn is_temporary_file(name: &str) -> bool {
    name.starts_with(TEMPORARY_PREFIX)
}

/// The temporary file that is renamed to `path` once whole: same directory, this
/// process's id in its name.
pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!("{TEMPORARY_PREFIX}{}-{name}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = temporary_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        if let Some(pause) = fault_injection::pause_point(&name) {
            file.write_all(&bytes[..bytes.len() / 2])?;
            file.sync_all()?;
            pause.pause();
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        crate::Error::File {
            path: path.to_path_buf(),
            message: format!("cannot write: {e}"),
        }
    })
}

/// A test hook: with `DWCONV_PAUSE_WRITE=<file name>:<n>` in the environment, the `n`-th
/// atomic write of that file stops half-way (half of the bytes on disk in the temporary
/// file), prints `dwconv: paused writing <file name>` to stderr and sleeps, so that a test
/// can kill the process in the middle of a checkpoint write.
mod fault_injection {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static WRITES: AtomicUsize = AtomicUsize::new(0);

    /// A write that is to pause.
    pub struct Pause(String);

    impl Pause {
        /// Announces the pause and sleeps until the process is killed.
        pub fn pause(self) -> ! {
            eprintln!("dwconv: paused writing {}", self.0);
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }

    /// `Some` when this write of `name` is the one the environment asks to pause.
    pub fn pause_point(name: &str) -> Option<Pause> {
        let spec = std::env::var("DWCONV_PAUSE_WRITE").ok()?;
        let (file, count) = spec.rsplit_once(':')?;
        let count: usize = count.parse().ok()?;
        if file != name {
            return None;
        }
        (WRITES.fetch_add(1, Ordering::SeqCst) + 1 == count).then(|| Pause(name.to_string()))
    }
}
