//! Volume and snapshot images: sparse files, copied by reflink where the filesystem can, else
//! extent by extent so holes stay holes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

const GIB: u64 = 1 << 30;

nix::ioctl_write_int!(ficlone, 0x94, 9);

/// A failure on the store's files. A size the host filesystem cannot hold is the request's
/// limit, not the driver's fault; a full disk is a quota like EBS's.
fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EFBIG) => Error::OutOfRange(format!(
            "{what} {}: the local store's filesystem cannot hold a volume image that large ({e})",
            path.display()
        )),
        Some(libc::ENOSPC | libc::EDQUOT) => Error::ResourceExhausted(format!(
            "{what} {}: the local store is out of space ({e})",
            path.display()
        )),
        _ => Error::internal(format!("{what} {}", path.display()), e),
    }
}

/// Writes `tmp` with `fill`, makes it durable, then renames it to `dest`: a crash leaves either
/// nothing at `dest` or the whole image.
fn write_atomically(dest: &Path, fill: impl FnOnce(&File) -> Result<()>) -> Result<()> {
    let tmp = dest.with_extension("tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err("cannot create", &tmp, e))?;
    let result = fill(&file).and_then(|()| file.sync_all().map_err(|e| io_err("cannot sync", &tmp, e)));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dest).map_err(|e| io_err("cannot rename into", dest, e))?;
    if let Some(dir) = dest.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("cannot sync", dir, e))?;
    }
    Ok(())
}

/// A new blank image of `size_gib` GiB that takes no space until written.
pub fn create_sparse(dest: &Path, size_gib: u64) -> Result<()> {
    let len = size_gib
        .checked_mul(GIB)
        .ok_or_else(|| Error::Internal(format!("{size_gib} GiB does not fit in a file size")))?;
    write_atomically(dest, |f| f.set_len(len).map_err(|e| io_err("cannot size", dest, e)))
}

/// `dest` becomes a copy of `src`, at least `size_gib` GiB long.
pub fn copy_image(src: &Path, dest: &Path, size_gib: u64) -> Result<()> {
    let source = File::open(src).map_err(|e| io_err("cannot open", src, e))?;
    let src_len = source.metadata().map_err(|e| io_err("cannot stat", src, e))?.len();
    let len = size_gib.saturating_mul(GIB).max(src_len);
    write_atomically(dest, |out| {
        // SAFETY: both descriptors are open for the duration of the call; FICLONE only reads them.
        let cloned = unsafe { ficlone(out.as_raw_fd(), source.as_raw_fd() as u64) }.is_ok();
        if !cloned {
            copy_extents(&source, out, src_len).map_err(|e| io_err("cannot copy", src, e))?;
        }
        out.set_len(len).map_err(|e| io_err("cannot size", dest, e))
    })
}

/// Copies only the data extents of `src` (SEEK_DATA/SEEK_HOLE), leaving holes as holes.
fn copy_extents(src: &File, dest: &File, len: u64) -> io::Result<()> {
    dest.set_len(len)?;
    let (sfd, dfd) = (src.as_raw_fd(), dest.as_raw_fd());
    let mut offset: i64 = 0;
    let end = i64::try_from(len).map_err(|_| io::Error::other("file too large"))?;
    while offset < end {
        // SAFETY: lseek on an open descriptor has no memory effects.
        let data = unsafe { libc::lseek(sfd, offset, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only holes remain
            }
            return Err(err);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(sfd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut from, mut to) = (data, data);
        let mut left = (hole - data) as usize;
        while left > 0 {
            // SAFETY: offsets point at live i64s; both descriptors are open.
            let n = unsafe { libc::copy_file_range(sfd, &mut from, dfd, &mut to, left, 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
            left -= n as usize;
        }
        offset = hole;
    }
    Ok(())
}

/// Grows an image in place (never shrinks).
pub fn grow(path: &Path, size_gib: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err("cannot open", path, e))?;
    let len = size_gib.saturating_mul(GIB);
    let current = file.metadata().map_err(|e| io_err("cannot stat", path, e))?.len();
    if len > current {
        file.set_len(len).map_err(|e| io_err("cannot grow", path, e))?;
        file.sync_all().map_err(|e| io_err("cannot sync", path, e))?;
    }
    Ok(())
}

/// Removes a file; success when it is already gone.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path, e)),
    }
}

/// Free bytes on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| Error::internal(format!("statvfs {}", dir.display()), e))?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}
