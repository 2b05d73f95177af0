//! Reading the files a config names (itself, certificates, keys, CA
//! bundles, secrets) without trusting them. Only a regular file is read: it
//! is opened non-blocking, so a FIFO swapped in for the config cannot hang
//! the reload in `open()`, then checked by its own metadata. Its size is
//! checked against a cap before a byte is read (and the read stops at the
//! cap, for a file that grows meanwhile), so a huge file costs neither
//! memory nor time, and nothing of it is kept after a refusal.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A config file: real ones are a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A certificate chain, a key or a CA bundle (the system's is ~200 KB).
pub const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// A secret: a password, a key, a token.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A caller directory's snapshot (a million numbers with an id and a short
/// name take about 53 MB: the index's arrays as they are in memory).
pub const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;

/// The file's bytes, if it is a regular file of at most `cap` bytes.
pub fn read(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, a device or a directory): refused",
        ));
    }
    let too_big = |len: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, over the limit of {cap}: refused"),
        )
    };
    if meta.len() > cap {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it with
/// `mode`, synced, then renamed over `path`, so a reader (or a crash) sees
/// the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, |out| out.write_all(bytes))
}

/// [`write_atomic`], the bytes written by `write` as it makes them (a
/// snapshot of tens of megabytes is never whole in memory).
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut io::BufWriter<std::fs::File>) -> io::Result<()>,
) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        let mut out = io::BufWriter::with_capacity(1 << 16, f);
        write(&mut out)?;
        let f = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::TempDir::new().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, "ok").unwrap();
        assert_eq!(read(&small, 2).unwrap(), b"ok");
        let err = read(&small, 1).unwrap_err();
        assert!(
            err.to_string().contains("2 bytes, over the limit of 1"),
            "{err}"
        );
        let err = read(dir.path(), 10).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // A FIFO nobody writes to: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = read(&fifo, 10).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        assert!(read_to_string(&small, 10).is_ok());
    }

    #[test]
    fn an_atomic_write_replaces_the_file_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
