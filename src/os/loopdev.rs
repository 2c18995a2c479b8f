//! Loop devices: read from sysfs, driven with the loop driver's ioctls (no child process, so
//! an attach costs microseconds, not a fork and exec).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

// From linux/loop.h.
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::internal(format!("cannot open {}", path.display()), e))
}

/// ioctl with an integer argument; the error is errno.
fn ioctl(file: &File, request: libc::c_ulong, arg: libc::c_ulong) -> std::io::Result<libc::c_int> {
    // SAFETY: the loop requests used here take an integer argument, not a pointer.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// One loop device and the file behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopDevice {
    pub device: PathBuf,
    pub backing_file: PathBuf,
}

/// Every loop device that has a backing file, from /sys/block/loop*/loop/backing_file.
pub fn list() -> Result<Vec<LoopDevice>> {
    list_in(Path::new("/sys/block"))
}

fn list_in(sys_block: &Path) -> Result<Vec<LoopDevice>> {
    let entries =
        std::fs::read_dir(sys_block).map_err(|e| Error::internal(format!("cannot read {}", sys_block.display()), e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        found.push(LoopDevice {
            device: PathBuf::from("/dev").join(name),
            backing_file: PathBuf::from(backing.trim_end_matches('\n')),
        });
    }
    found.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(found)
}

/// The loop devices whose backing file is `file`.
pub fn find(file: &Path) -> Result<Vec<LoopDevice>> {
    Ok(list()?
        .into_iter()
        .filter(|l| {
            l.backing_file == file || (l.backing_file.file_name() == file.file_name() && same_file(&l.device, file))
        })
        .collect())
}

/// Whether `file` is the backing file of loop device `device`.
pub fn backs(device: &Path, file: &Path) -> bool {
    backing_file(device).is_some_and(|b| b == file || (b.file_name() == file.file_name() && same_file(device, file)))
}

/// The backing file's name in sysfs is its path as the attaching process saw it. Attached from a
/// container whose mount has since gone (the controller pod restarted), it reads `/volumes/…`:
/// then the loop driver's device and inode numbers say whether it is `file`.
fn same_file(device: &Path, file: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(file) else {
        return false;
    };
    let Ok(dev) = File::open(device) else {
        return false;
    };
    // struct loop_info64 is 232 bytes: lo_device, lo_inode, then fields not read here.
    let mut info = [0u64; 29];
    // SAFETY: LOOP_GET_STATUS64 writes one struct loop_info64 into the buffer, which is its size.
    if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_GET_STATUS64 as _, info.as_mut_ptr()) } < 0 {
        return false;
    }
    // lo_device is in the kernel's encoding of device numbers (new_encode_dev).
    let d = info[0];
    let (major, minor) = ((d >> 8) & 0xfff, (d & 0xff) | ((d >> 12) & 0xfff00));
    libc::makedev(major as u32, minor as u32) == meta.dev() && info[1] == meta.ino()
}

/// The backing file of one loop device, if it has one.
pub fn backing_file(device: &Path) -> Option<PathBuf> {
    let name = device.file_name()?.to_str()?;
    if !name.starts_with("loop") {
        return None;
    }
    let text = std::fs::read_to_string(Path::new("/sys/block").join(name).join("loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// Attaches `file` to a free loop device, or returns the one it already has.
pub async fn attach(file: &Path) -> Result<PathBuf> {
    if let Some(existing) = find(file)?.into_iter().next() {
        return Ok(existing.device);
    }
    let image = open_rw(file)?;
    let control = open_rw(Path::new("/dev/loop-control"))?;
    // Another process may take the free device between the two calls: then ask again.
    for _ in 0..16 {
        let n = ioctl(&control, LOOP_CTL_GET_FREE, 0).map_err(|e| Error::internal("no free loop device", e))?;
        let device = PathBuf::from(format!("/dev/loop{n}"));
        let dev = open_rw(&device)?;
        match ioctl(&dev, LOOP_SET_FD, image.as_raw_fd() as libc::c_ulong) {
            Ok(_) => return Ok(device),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => {
                return Err(Error::internal(
                    format!("cannot attach {} to {}", file.display(), device.display()),
                    e,
                ));
            }
        }
    }
    Err(Error::Unavailable(format!(
        "loop devices kept being taken while attaching {}; retry",
        file.display()
    )))
}

/// Detaches a loop device. A device already gone (or bound to another file) is left alone;
/// one still in use is detached by the kernel when its last user closes it.
pub async fn detach(device: &Path, expected_backing: &Path) -> Result<()> {
    if !backs(device, expected_backing) {
        return Ok(());
    }
    let dev = open_rw(device)?;
    match ioctl(&dev, LOOP_CLR_FD, 0) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(()), // already detached
        Err(e) => Err(Error::internal(format!("cannot detach {}", device.display()), e)),
    }
}

/// What still uses a loop device, if anything: a filesystem on it mounted somewhere, its device
/// node bound somewhere (a raw block volume in a pod), or an exclusive holder (a mount in
/// another namespace, device-mapper).
pub fn in_use(device: &Path) -> Result<Option<String>> {
    let Some(rdev) = super::blockdev::number(device) else {
        return Ok(None);
    };
    for m in super::mount::mounts()? {
        if m.dev == rdev {
            return Ok(Some(format!("mounted at {}", m.target.display())));
        }
        // A bound device node is a mount of one file: its root is not "/".
        if m.root != Path::new("/") && super::blockdev::number(&m.target) == Some(rdev) {
            return Ok(Some(format!("bound at {}", m.target.display())));
        }
    }
    use std::os::unix::fs::OpenOptionsExt;
    match OpenOptions::new().read(true).custom_flags(libc::O_EXCL).open(device) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(Some("held open exclusively".into())),
        _ => Ok(None),
    }
}

/// Makes the loop device see its backing file's new size.
pub async fn refresh_capacity(device: &Path) -> Result<()> {
    let dev = open_rw(device)?;
    ioctl(&dev, LOOP_SET_CAPACITY, 0)
        .map(drop)
        .map_err(|e| Error::internal(format!("cannot refresh the size of {}", device.display()), e))
}
