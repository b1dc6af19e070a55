//! Filesystem writes that never leave a partial file behind, and the lock
//! files that keep two kina processes from making the same thing at once.

use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and
/// a rename, so a reader sees the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kina-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    make_shareable(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Temporary files are created 0600; what kina publishes (locks, layouts,
/// store files) is ordinary data that other tools and users read.
pub fn make_shareable(file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

/// Directories made with `tempfile` are 0700; published ones are 0755.
pub fn make_dir_shareable(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// Blocks until this process holds the exclusive lock of `path` (created
/// when missing, never truncated). It is released when the file is dropped
/// or the process dies, so a killed kina never leaves one held.
pub fn lock_file(path: &Path) -> io::Result<std::fs::File> {
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}
