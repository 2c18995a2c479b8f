//! Paths from requests: checked for length and form before use, and the directories and files
//! the node makes and removes at them.

use super::*;

/// The longest path and path component Linux takes (PATH_MAX less its NUL, NAME_MAX).
pub(super) const PATH_MAX: usize = 4095;

pub(super) const NAME_MAX: usize = 255;

/// Why `value` cannot name a place on this host, if it cannot: it must be absolute, without
/// `..` or NUL, and within the kernel's length limits. Never resolved against a working dir.
pub(super) fn path_problem(value: &str) -> Option<&'static str> {
    let path = Path::new(value);
    if !path.is_absolute() {
        Some("must be an absolute path")
    } else if path.components().any(|c| c == Component::ParentDir) {
        Some("must not contain '..'")
    } else if value.contains('\0') {
        Some("must not contain a NUL byte")
    } else if value.len() > PATH_MAX {
        Some("is longer than the 4095 bytes a Linux path may have")
    } else if path.iter().any(|c| c.len() > NAME_MAX) {
        Some("has a component longer than the 255 bytes Linux allows")
    } else {
        None
    }
}

/// A path the CO asks the node to make or use: required, and well-formed.
pub(super) fn checked_path(value: &str, field: &str) -> Result<PathBuf> {
    require(value, field)?;
    match path_problem(value) {
        Some(problem) => Err(Error::InvalidArgument(format!("{field} {value:?} {problem}"))),
        None => Ok(PathBuf::from(value)),
    }
}

/// A path where the CO says the volume already is (unstage, unpublish, stats, expand, health):
/// required; a path that cannot exist cannot hold the volume either, so a bad shape is
/// NOT_FOUND, and such a path is never resolved against anything.
pub(super) fn volume_path(value: &str, field: &str, id: &str) -> Result<PathBuf> {
    require(value, field)?;
    match path_problem(value) {
        Some(problem) => Err(Error::NotFound(format!(
            "volume {id} is not at {field} {value:?}: it {problem}"
        ))),
        None => Ok(PathBuf::from(value)),
    }
}

/// A failure to make or remove something at a path the CO gave: the path's fault (a file where
/// a directory must be, a read-only place) is the caller's to fix, not an internal error.
pub(super) fn path_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    use nix::errno::Errno;
    let message = format!("cannot {what} {}: {e}", path.display());
    match e.raw_os_error().map(Errno::from_raw) {
        // ENOENT and EINVAL: a place where no directory can be made (inside /proc or /sys);
        // EISDIR: a directory where a raw block target (a file) must be.
        Some(
            Errno::ENOTDIR
            | Errno::EEXIST
            | Errno::ENAMETOOLONG
            | Errno::ELOOP
            | Errno::ENOENT
            | Errno::EINVAL
            | Errno::EISDIR,
        ) => Error::InvalidArgument(message),
        Some(Errno::EROFS | Errno::EACCES | Errno::EPERM) => Error::FailedPrecondition(message),
        Some(Errno::ENOSPC | Errno::EDQUOT | Errno::EMLINK) => Error::ResourceExhausted(message),
        _ => Error::Internal(message),
    }
}

pub(super) fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| path_error("create", path, &e))
}

/// Removes what publish made at a target: an empty directory, or the empty file a raw device
/// was bound on. Anything else at the path is not the driver's and is left alone (a non-empty
/// directory, a file with data, a device node): the volume is not there, which is what the
/// caller wants.
pub(super) fn remove_target(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(path_error("inspect", path, &e)),
    };
    let removed = if meta.is_dir() {
        std::fs::remove_dir(path)
    } else if meta.is_file() && meta.len() == 0 {
        std::fs::remove_file(path)
    } else {
        warn!(target = %path.display(), "not an empty directory or file; left in place");
        return Ok(());
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
            warn!(target = %path.display(), "directory is not empty; left in place");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(path_error("remove", path, &e)),
    }
}
