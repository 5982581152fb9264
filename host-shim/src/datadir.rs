//! The data folder is private to the user running the host: folders are
//! created 0700 and files 0600, so the database (webhook URLs, sealed secrets,
//! delivery history), the keys and the compiled-component cache are readable
//! by no other account on the machine.
//!
//! [`crate::Webhooks::start`] applies this before anything else touches the
//! folder; `serve` does too before it writes its token and password hash
//! (each through [`crate::secrets::read_or_create`]). Folders and files an
//! older version left group- or world-accessible are tightened on start; when
//! that is not possible (another owner), a warning says so and the start goes on.
//!
//! On other platforms than Unix these only create what is missing.

use std::io;
use std::path::Path;

use anyhow::Context as _;

use crate::Config;

/// Owner-only folder mode.
pub const DIR_MODE: u32 = 0o700;
/// Owner-only file mode.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` (its parents with the usual mode) as a 0700 folder, or
/// tightens an existing one that is group- or world-accessible. A shared
/// folder with the sticky bit (like `/tmp`) is left alone, with a warning.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    if !path.is_dir() {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
        match b.create(path) {
            // The umask may have taken bits away: the owner needs all three.
            Ok(()) => return set_mode(path, DIR_MODE),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            if mode & 0o1000 != 0 {
                tracing::warn!(path = %path.display(), "a shared folder (sticky bit): not making it private");
            } else {
                tighten(path, DIR_MODE);
            }
        }
    }
    Ok(())
}

/// Creates an empty 0600 file at `path` when missing, or tightens an existing
/// one to 0600. Called for the database before SQLite opens it: SQLite gives
/// the `-wal` and `-shm` files it creates the database file's mode.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    if !path.exists() {
        match crate::secrets::write_private(path, &[]) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    tighten_file(path);
    Ok(())
}

/// Tightens `path` to 0600 when it exists and is group- or world-accessible
/// (a database's `-wal`/`-shm` left by an older version, a cache file).
pub fn tighten_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::symlink_metadata(path)
            && m.is_file()
            && m.permissions().mode() & 0o077 != 0
        {
            tighten(path, FILE_MODE);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The database file, and the `-wal`/`-shm` files next to it when they exist.
pub fn private_database(db: &Path) -> io::Result<()> {
    ensure_private_file(db)?;
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        tighten_file(Path::new(&p));
    }
    Ok(())
}

/// What [`crate::Webhooks::start`] does before the runtime opens anything:
/// the data folder 0700; the cache folder 0700 when it is inside the data
/// folder or new (an existing folder elsewhere is the operator's, left as it
/// is); the database file 0600.
pub fn prepare(config: &Config) -> anyhow::Result<()> {
    let data = &config.data_dir;
    create_private_dir(data).with_context(|| format!("creating {}", data.display()))?;
    let cache = config.cache_path();
    if cache.starts_with(data) || !cache.exists() {
        create_private_dir(&cache).with_context(|| format!("creating {}", cache.display()))?;
    }
    if config.database_url.is_some() {
        // The tables live in PostgreSQL; no database file here.
        return Ok(());
    }
    let db = config.db_path();
    private_database(&db).with_context(|| format!("creating {}", db.display()))
}

/// Best effort: a folder or file of another owner stays as it is.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) {
    match set_mode(path, mode) {
        Ok(()) => tracing::info!(path = %path.display(), "made private (mode {mode:o})"),
        Err(e) => tracing::warn!(path = %path.display(), "could not make it private (mode {mode:o}): {e}"),
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn folders_and_files_are_created_private_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/data");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        create_private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "an open folder is tightened");

        let db = dir.join("webhooks.db");
        private_database(&db).unwrap();
        assert_eq!((mode(&db), std::fs::metadata(&db).unwrap().len()), (0o600, 0));
        let wal = dir.join("webhooks.db-wal");
        std::fs::write(&db, b"kept").unwrap();
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666)).unwrap();
        private_database(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
        assert_eq!(std::fs::read(&db).unwrap(), b"kept", "an existing file keeps its content");
        assert!(!dir.join("webhooks.db-shm").exists(), "nothing is created but the database");
    }
}
