//! Files only their owner may read: the data directory holds keys, records and (for the
//! chat) plaintext history, so it is made 0700 and its databases 0600 (on Unix; a no-op
//! elsewhere).

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) if needed, readable by its owner only. A directory
/// that already exists keeps its permissions (it may be shared on purpose, or be `$HOME`);
/// a warning says so if others can read it.
///
/// # Errors
/// When the directory cannot be created or its permissions set.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        warn_if_shared(dir);
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

#[cfg(unix)]
fn warn_if_shared(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                "the data directory can be read by others (its files are the owner's only)"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_dir: &Path) {}

/// Makes an existing file readable and writable by its owner only.
///
/// # Errors
/// When the permissions cannot be set.
pub fn private_file(file: &Path) -> io::Result<()> {
    set_mode(file, 0o600)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_data_directory_and_its_databases_are_the_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let (_storage, _) = crate::storage::Storage::open(&dir.join("dht.redb"), 1 << 20).unwrap();
        let mode = std::fs::metadata(dir.join("dht.redb"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "dht.redb");
    }
}
