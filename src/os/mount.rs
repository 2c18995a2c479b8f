//! Mounts: read from /proc/self/mountinfo, changed with mount(2) and umount2(2) directly (no
//! `mount` binary, so no shell quoting and no helper programs).

use std::ffi::OsString;
use std::fmt::Display;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    /// The device number of the mounted filesystem (`st_dev` of every file on it).
    pub dev: u64,
    /// The directory of the filesystem that appears at `target`: `/` for a whole filesystem, a
    /// subdirectory for a bind mount of one.
    pub root: PathBuf,
    pub target: PathBuf,
    /// Per-mount options ("ro", "rw", "nosuid", "relatime", …).
    pub options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Options of the filesystem itself, shared by every mount of it.
    pub super_options: Vec<String>,
}

impl Mount {
    /// Whether writes through this mount fail: either the mount point or the whole filesystem is
    /// read-only.
    pub fn read_only(&self) -> bool {
        self.options.iter().chain(&self.super_options).any(|o| o == "ro")
    }
}

/// Every mount visible to this process, in /proc/self/mountinfo order.
pub fn mounts() -> Result<Vec<Mount>> {
    // Read as bytes: paths need not be UTF-8, and the kernel only escapes space, tab, newline
    // and backslash.
    let text =
        std::fs::read("/proc/self/mountinfo").map_err(|e| Error::internal("cannot read /proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text[..]))
}

/// Parses mountinfo text; a line that does not have the expected shape is skipped rather than
/// failing the whole listing.
fn parse_mountinfo<T: AsRef<[u8]> + ?Sized>(text: &T) -> Vec<Mount> {
    text.as_ref()
        .split(|&b| b == b'\n')
        .filter_map(parse_mountinfo_line)
        .collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: five fixed
/// fields, the mount options, zero or more optional fields, "-", then type, source and super
/// options.
fn parse_mountinfo_line(line: &[u8]) -> Option<Mount> {
    // Split on single spaces, not runs of them: an empty source shows up as an empty field.
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if fields.len() < 6 {
        return None;
    }
    let number = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<u32>().ok();
    let id = number(fields[0])?;
    let parent = number(fields[1])?;
    let (major, minor) = std::str::from_utf8(fields[2]).ok()?.split_once(':')?;
    let dev = nix::sys::stat::makedev(major.parse().ok()?, minor.parse().ok()?);
    let separator = 6 + fields[6..].iter().position(|f| *f == b"-")?;
    let fs_type = fields.get(separator + 1)?;
    let source = fields.get(separator + 2)?;
    let super_options = fields.get(separator + 3).map(|f| split_options(f)).unwrap_or_default();
    Some(Mount {
        id,
        parent,
        dev,
        root: PathBuf::from(OsString::from_vec(unescape(fields[3]))),
        target: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
        options: split_options(fields[5]),
        fs_type: lossy(fs_type),
        source: lossy(source),
        super_options,
    })
}

fn lossy(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

fn split_options(field: &[u8]) -> Vec<String> {
    if field.is_empty() {
        return Vec::new();
    }
    lossy(field).split(',').map(str::to_owned).collect()
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash); a backslash not followed by three octal digits is kept as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// The topmost mount whose target is exactly `target` (symlinks in `target` resolved, as the
/// kernel resolves them). Mounts listed there that the path no longer reaches — a later mount
/// on a parent directory hides them — are FAILED_PRECONDITION: they can be neither used nor
/// unmounted through this path until that mount goes.
pub fn mount_at(target: &Path) -> Result<Option<Mount>> {
    let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let Some(top) = topmost(mounts()?, &target) else {
        return Ok(None);
    };
    match live_mount_id(&target) {
        Some(id) if id == top.id => Ok(Some(top)),
        // A kernel without mnt_id in fdinfo (before 3.15) cannot tell; trust the listing.
        None if !Path::new("/proc/self/fdinfo").exists() => Ok(Some(top)),
        _ => Err(Error::FailedPrecondition(format!(
            "{} ({}) is mounted at {} but hidden by a later mount on a parent directory; unmount that first",
            top.source,
            top.fs_type,
            target.display()
        ))),
    }
}

/// The id of the mount that `path` resolves to now, as the kernel reports it for an open file
/// (`mnt_id` in /proc/self/fdinfo); None when the path cannot be opened.
fn live_mount_id(path: &Path) -> Option<u32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // O_PATH: no access to the file itself is needed (or wanted: it may be a device node).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .ok()?;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Among the mounts stacked on `target`, the one no other mount there sits on; mountinfo order
/// breaks a tie.
fn topmost(all: Vec<Mount>, target: &Path) -> Option<Mount> {
    let here: Vec<Mount> = all.into_iter().filter(|m| m.target == target).collect();
    let covered = |m: &Mount| here.iter().any(|other| other.parent == m.id && other.id != m.id);
    let index = here.iter().rposition(|m| !covered(m)).or(here.len().checked_sub(1))?;
    here.into_iter().nth(index)
}

/// Mounts the filesystem on `device` at `target`. `flags` are a CSI capability's mount_flags: the
/// generic ones become mount(2) flags, the rest go to the filesystem as its option string.
pub fn mount_device(device: &Path, target: &Path, fs_type: &str, flags: &[String]) -> Result<()> {
    check_path("device", device)?;
    check_path("target", target)?;
    if fs_type.is_empty() || fs_type.contains(['\0', ',']) {
        return Err(Error::InvalidArgument(format!("invalid filesystem type {fs_type:?}")));
    }
    let (ms_flags, data) = mount_options(flags)?;
    nix::mount::mount(Some(device), target, Some(fs_type), ms_flags, data.as_deref()).map_err(|e| {
        let context = format!(
            "mount {} on {} (type {fs_type}, options {:?}) failed; the kernel log says why",
            device.display(),
            target.display(),
            flags.join(",")
        );
        match e {
            // The callers mount a filesystem of the type blkid found, so what the kernel
            // refuses as invalid is the mount flags (an option the filesystem does not know,
            // or a value it cannot take): the request's.
            Errno::EINVAL => Error::InvalidArgument(format!("{context}: {e}; check the mount flags")),
            e => errno_error(context, e),
        }
    })
}

/// Splits mount flags into mount(2) flags and the filesystem's option string, later flags
/// overriding earlier ones as mount(8) does.
fn mount_options(flags: &[String]) -> Result<(MsFlags, Option<String>)> {
    // The kernel copies at most one page of option data and silently drops the rest.
    const MAX_DATA: usize = 4095;
    let atime = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
    let mut ms = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for flag in flags {
        check_flag(flag)?;
        let (set, clear) = match flag.as_str() {
            "" | "defaults" => continue,
            // Userspace-only fstab words that mount(8) strips before calling the kernel.
            "auto" | "noauto" | "nofail" | "_netdev" => continue,
            f if f.starts_with("x-") => continue,
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "iversion" => (MsFlags::MS_I_VERSION, MsFlags::empty()),
            "noiversion" => (MsFlags::empty(), MsFlags::MS_I_VERSION),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            // The atime modes exclude each other; the last one named wins.
            "noatime" => (MsFlags::MS_NOATIME, atime),
            "relatime" => (MsFlags::MS_RELATIME, atime),
            "strictatime" => (MsFlags::MS_STRICTATIME, atime),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            // These would turn the call into a different operation on some other mount.
            "remount" | "bind" | "rbind" | "move" | "shared" | "rshared" | "private" | "rprivate" | "slave"
            | "rslave" | "unbindable" | "runbindable" => {
                return Err(Error::InvalidArgument(format!(
                    "mount flag {flag:?} is not allowed in a volume's mount flags"
                )));
            }
            other => {
                data.push(other);
                continue;
            }
        };
        ms.remove(clear);
        ms.insert(set);
    }
    let data = data.join(",");
    if data.len() > MAX_DATA {
        return Err(Error::InvalidArgument(format!(
            "mount options are {} bytes long; the kernel takes at most {MAX_DATA}",
            data.len()
        )));
    }
    Ok((ms, (!data.is_empty()).then_some(data)))
}

/// A flag must be one option: a comma would smuggle in others and a NUL would cut the string.
/// A comma inside double quotes is part of a value (SELinux `context="…:c0,c1"`), which the
/// kernel's option parser understands.
fn check_flag(flag: &str) -> Result<()> {
    let bad = || Error::InvalidArgument(format!("mount flag {flag:?} must be a single option"));
    let mut quoted = false;
    for c in flag.chars() {
        match c {
            '\0' => return Err(bad()),
            '"' => quoted = !quoted,
            ',' if !quoted => return Err(bad()),
            _ => {}
        }
    }
    if quoted { Err(bad()) } else { Ok(()) }
}

/// Bind-mounts `source` (a directory or a file, such as a block device node) on `target`.
pub fn bind(source: &Path, target: &Path, read_only: bool) -> Result<()> {
    check_path("source", source)?;
    check_path("target", target)?;
    let context = || format!("bind mount {} on {}", source.display(), target.display());
    nix::mount::mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| errno_error(context(), e))?;
    if !read_only {
        return Ok(());
    }
    // A bind ignores MS_RDONLY; only a remount of the new mount point makes it read-only, and
    // with MS_BIND it leaves the shared filesystem (the source) writable. That remount replaces
    // the per-mount flags, so the nosuid/nodev/noexec the bind inherited are passed again (the
    // kernel keeps the atime mode by itself when none is given).
    let remount = nix::sys::statvfs::statvfs(target)
        .map_err(|e| errno_error(format_args!("{}: statvfs", context()), e))
        .and_then(|st| {
            let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
            let inherited = st.flags();
            use nix::sys::statvfs::FsFlags;
            for (kept, flag) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            ] {
                if inherited.contains(kept) {
                    flags.insert(flag);
                }
            }
            nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
                .map_err(|e| errno_error(format_args!("{}: read-only remount", context()), e))
        });
    if remount.is_err() {
        // Leave no writable bind behind where a read-only one was asked for.
        let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
    }
    remount
}

/// Unmounts the topmost mount at `target`. Nothing mounted there, or no such path, is success:
/// that is the state the caller wants.
pub fn unmount(target: &Path) -> Result<()> {
    check_path("target", target)?;
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        // EINVAL is also what a mount we may not unmount gives; only "not a mount point" is Ok.
        Err(Errno::EINVAL) => match mount_at(target)? {
            None => Ok(()),
            Some(m) => Err(Error::Internal(format!(
                "unmount {}: the kernel refused (EINVAL) although {} from {} is mounted there",
                target.display(),
                m.fs_type,
                m.source
            ))),
        },
        Err(e) => Err(errno_error(format_args!("unmount {}", target.display()), e)),
    }
}

/// A path with a NUL byte cannot reach the kernel (nix would report it as EINVAL, which
/// `unmount` reads as "not mounted").
fn check_path(what: &str, path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() || path.as_os_str().as_bytes().contains(&0) {
        return Err(Error::InvalidArgument(format!("invalid {what} path {path:?}")));
    }
    Ok(())
}

/// A failed system call as the driver's error: a missing path is NotFound, a busy one
/// FailedPrecondition (the caller has to wait or clean up), anything else Internal.
pub(super) fn errno_error(context: impl Display, errno: Errno) -> Error {
    let message = format!("{context}: {errno}");
    match errno {
        Errno::ENOENT => Error::NotFound(message),
        Errno::EBUSY => Error::FailedPrecondition(message),
        _ => Error::Internal(message),
    }
}

/// The same for `std::io` errors.
pub(super) fn io_error(context: impl Display, err: &std::io::Error) -> Error {
    match err.raw_os_error() {
        Some(raw) => errno_error(context, Errno::from_raw(raw)),
        None => Error::internal(context, err),
    }
}

/// Test scaffolding shared by the os tests: a temp dir with a sparse image on a loop device that
/// is unmounted and detached when dropped, whether the test passed or not.
#[cfg(test)]
pub(crate) mod scratch {
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    use nix::mount::MntFlags;

    use crate::os::loopdev;

    // LOOP_CLR_FD from linux/loop.h; libc does not define it.
    nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);

    pub(crate) struct Scratch {
        pub dir: tempfile::TempDir,
        pub image: PathBuf,
        device: Option<PathBuf>,
        mounts: Vec<PathBuf>,
    }

    impl Scratch {
        /// A temp dir holding `disk.img` (sparse, `size` bytes), attached to a loop device.
        pub async fn new(size: u64) -> Scratch {
            let mut s = Scratch::without_device(size);
            s.device = Some(loopdev::attach(&s.image).await.expect("attach a loop device"));
            s
        }

        /// The same without a loop device: `disk.img` is a plain file.
        pub fn without_device(size: u64) -> Scratch {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let image = dir.path().join("disk.img");
            std::fs::File::create(&image)
                .and_then(|f| f.set_len(size))
                .expect("sparse image");
            Scratch {
                dir,
                image,
                device: None,
                mounts: Vec::new(),
            }
        }

        pub fn device(&self) -> &Path {
            self.device.as_deref().expect("a loop device")
        }

        /// A new directory inside the temp dir.
        pub fn dir(&self, name: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::create_dir(&path).expect("mkdir");
            path
        }

        /// Records that a mount on `target` is about to be made, so Drop undoes it. Call it before
        /// mounting: a mount that then fails costs only a harmless EINVAL at cleanup.
        pub fn will_mount(&mut self, target: &Path) {
            assert!(
                target.starts_with(self.dir.path()),
                "scratch mounts stay in the temp dir"
            );
            self.mounts.push(target.to_path_buf());
        }

        /// Grows the image file and makes the loop device see it.
        pub async fn grow_image(&self, size: u64) {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.image)
                .and_then(|f| f.set_len(size))
                .expect("grow image");
            loopdev::refresh_capacity(self.device())
                .await
                .expect("losetup --set-capacity");
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            for target in self.mounts.iter().rev() {
                let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
            }
            if let Some(device) = &self.device
                && loopdev::backing_file(device).as_deref() == Some(self.image.as_path())
                && let Ok(file) = std::fs::File::open(device)
            {
                // What `losetup --detach` does (Drop cannot await `os::run`). A device still held
                // by a lazily unmounted filesystem is marked to detach itself once released.
                // SAFETY: LOOP_CLR_FD takes no argument; the fd is open for the call.
                let _ = unsafe { loop_clr_fd(file.as_raw_fd()) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::io::Write;

    use super::scratch::Scratch;
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,errors=remount-ro
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 27 7:3 / /var/lib/kubelet/pods/a\\040b/volumes/my\\011vol\\012x\\134y ro,nosuid,nodev shared:7 master:2 propagate_from:3 - xfs /dev/loop3 rw,attr2,inode64
41 27 0:50 /sub/dir /srv/bound rw - tmpfs  rw,size=1024k
garbage line
42 x 0:1 / /bad rw - tmpfs tmpfs rw
43 27 0:51 / /no/separator rw tmpfs tmpfs rw
44 27 0:52 / /old rw - tmpfs tmpfs
";

    #[test]
    fn mountinfo_fields_optional_fields_and_escapes() {
        let all = parse_mountinfo(SAMPLE);
        let ids: Vec<u32> = all.iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            [22, 27, 36, 40, 41, 44],
            "malformed lines are skipped, good ones kept"
        );

        let root = &all[1];
        assert_eq!(root.parent, 1);
        assert_eq!(root.target, Path::new("/"));
        assert_eq!(root.fs_type, "ext4");
        assert_eq!(root.source, "/dev/vda");
        assert_eq!(root.super_options, ["rw", "errors=remount-ro"]);

        let bound = &all[2];
        assert_eq!(bound.root, Path::new("/mnt1"));
        assert_eq!(bound.target, Path::new("/mnt2"));
        assert_eq!(bound.options, ["rw", "noatime"]);
        assert_eq!(bound.fs_type, "ext3");

        let pod = &all[3];
        assert_eq!(
            pod.target,
            Path::new("/var/lib/kubelet/pods/a b/volumes/my\tvol\nx\\y"),
            "octal escapes are undone"
        );
        assert_eq!(pod.options, ["ro", "nosuid", "nodev"]);
        assert_eq!(pod.fs_type, "xfs", "several optional fields before the separator");
        assert_eq!(pod.source, "/dev/loop3");
        assert_eq!(pod.super_options, ["rw", "attr2", "inode64"]);
        assert!(pod.read_only());
        assert!(!root.read_only());

        let tmp = &all[4];
        assert_eq!(tmp.root, Path::new("/sub/dir"));
        assert_eq!(tmp.source, "", "an empty source is an empty field, not a shifted one");
        assert_eq!(tmp.super_options, ["rw", "size=1024k"]);

        assert!(all[5].super_options.is_empty(), "missing super options tolerated");
    }

    #[test]
    fn read_only_superblock_counts() {
        let m = parse_mountinfo("50 27 7:1 / /x rw - ext4 /dev/loop1 ro");
        assert!(m[0].read_only());
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape(br"a\040b"), b"a b");
        assert_eq!(unescape(br"a\04"), br"a\04");
        assert_eq!(unescape(br"a\x40"), br"a\x40");
        assert_eq!(unescape(br"\777"), br"\777", "above 255 is not a byte");
        assert_eq!(unescape(b"\\"), b"\\");
    }

    #[test]
    fn non_utf8_paths_survive() {
        let all = parse_mountinfo(&b"60 27 7:1 / /mnt/\xff\xfe rw - ext4 /dev/loop1 rw"[..]);
        assert_eq!(all[0].target.as_os_str().as_bytes(), b"/mnt/\xff\xfe");
    }

    #[test]
    fn topmost_of_stacked_mounts() {
        let all = parse_mountinfo(
            "\
30 1 0:1 / /a rw - tmpfs t1 rw
31 30 0:2 / /a/b rw - tmpfs t2 rw
32 31 0:3 / /a/b rw - tmpfs t3 rw
33 1 0:4 / /c rw - tmpfs t4 rw
",
        );
        assert_eq!(topmost(all.clone(), Path::new("/a/b")).map(|m| m.id), Some(32));
        // A listing not in creation order still gives the mount on top.
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(topmost(reversed, Path::new("/a/b")).map(|m| m.id), Some(32));
        assert_eq!(topmost(all.clone(), Path::new("/a")).map(|m| m.id), Some(30));
        assert_eq!(topmost(all, Path::new("/nothing")), None);
    }

    fn strings(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_split_into_mount_flags_and_data() {
        let (ms, data) = mount_options(&strings(&[
            "ro",
            "noatime",
            "nosuid",
            "nodev",
            "noexec",
            "discard",
            "sync",
            "dirsync",
            "lazytime",
            "defaults",
            "nofail",
            "commit=30",
        ]))
        .unwrap();
        assert_eq!(
            ms,
            MsFlags::MS_RDONLY
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_SYNCHRONOUS
                | MsFlags::MS_DIRSYNC
                | MsFlags::MS_LAZYTIME
        );
        assert_eq!(data.as_deref(), Some("discard,commit=30"));

        let (ms, data) = mount_options(&[]).unwrap();
        assert_eq!((ms, data), (MsFlags::empty(), None));
    }

    #[test]
    fn later_flags_override_earlier_ones() {
        let (ms, _) = mount_options(&strings(&["ro", "rw", "nodiratime", "noatime", "relatime"])).unwrap();
        assert_eq!(ms, MsFlags::MS_NODIRATIME | MsFlags::MS_RELATIME);
        let (ms, _) = mount_options(&strings(&["relatime", "strictatime", "noexec", "exec"])).unwrap();
        assert_eq!(ms, MsFlags::MS_STRICTATIME);
    }

    #[test]
    fn bad_flags_are_invalid_arguments() {
        for bad in [
            "noatime,nosuid",
            "a\0b",
            "bind",
            "rshared",
            "remount",
            "context=\"unclosed",
        ] {
            let result = mount_options(&strings(&["ro", bad]));
            assert!(
                matches!(result, Err(Error::InvalidArgument(_))),
                "{bad:?} gave {result:?}"
            );
        }
        let long = "x".repeat(5000);
        assert!(matches!(mount_options(&[long]), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn a_quoted_comma_belongs_to_its_value() {
        let flag = r#"context="system_u:object_r:container_file_t:s0:c0,c1""#;
        let (_, data) = mount_options(&strings(&[flag])).unwrap();
        assert_eq!(data.as_deref(), Some(flag));
    }

    #[test]
    fn paths_with_nul_are_rejected_before_the_kernel() {
        let nul = Path::new(OsStr::from_bytes(b"/tmp/a\0b"));
        assert!(matches!(unmount(nul), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            mount_device(Path::new("/dev/null"), nul, "ext4", &[]),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn real_mountinfo_has_proc() {
        let proc = mount_at(Path::new("/proc")).unwrap().expect("/proc is mounted");
        assert_eq!(proc.fs_type, "proc");
        assert!(mounts().unwrap().iter().any(|m| m.target == Path::new("/")));
    }

    #[test]
    fn unmount_of_nothing_is_ok() {
        let s = Scratch::without_device(0);
        let plain = s.dir("plain");
        unmount(&plain).expect("not a mount point");
        unmount(&s.dir.path().join("missing")).expect("no such path");
        assert!(plain.exists());
    }

    #[tokio::test]
    async fn mount_flags_reach_the_kernel_and_binds_can_be_read_only() {
        let mut s = Scratch::new(64 << 20).await;
        crate::os::run("mkfs.ext4", ["-q".as_ref(), "-F".as_ref(), s.device().as_os_str()])
            .await
            .unwrap();
        let stage = s.dir("stage");
        let publish = s.dir("publish");
        let device = s.device().to_path_buf();

        // An option the filesystem does not know fails, and leaves nothing mounted.
        s.will_mount(&stage);
        let err = mount_device(&device, &stage, "ext4", &strings(&["no_such_option"])).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert_eq!(mount_at(&stage).unwrap(), None);

        let missing = s.dir.path().join("missing");
        let err = mount_device(&device, &missing, "ext4", &[]).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");

        s.will_mount(&stage);
        mount_device(
            &device,
            &stage,
            "ext4",
            &strings(&["nosuid", "nodev", "noatime", "commit=30"]),
        )
        .unwrap();
        let m = mount_at(&stage).unwrap().expect("staged");
        assert_eq!(m.fs_type, "ext4");
        assert_eq!(m.source, device.to_string_lossy());
        for opt in ["rw", "nosuid", "nodev", "noatime"] {
            assert!(m.options.iter().any(|o| o == opt), "{opt} missing from {:?}", m.options);
        }
        assert!(
            m.super_options.iter().any(|o| o == "commit=30"),
            "data string: {:?}",
            m.super_options
        );
        assert!(!m.read_only());
        std::fs::File::create(stage.join("hello"))
            .and_then(|mut f| f.write_all(b"hello"))
            .unwrap();

        s.will_mount(&publish);
        bind(&stage, &publish, true).unwrap();
        let b = mount_at(&publish).unwrap().expect("published");
        assert!(b.read_only());
        for opt in ["ro", "nosuid", "nodev", "noatime"] {
            assert!(b.options.iter().any(|o| o == opt), "{opt} missing from {:?}", b.options);
        }
        assert_eq!(std::fs::read(publish.join("hello")).unwrap(), b"hello");
        let err = std::fs::File::create(publish.join("nope")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        // The remount touched the bind only, not the filesystem behind the staging mount.
        std::fs::write(stage.join("still-writable"), b"x").expect("staging mount stays writable");
        assert!(!mount_at(&stage).unwrap().unwrap().read_only());

        unmount(&publish).unwrap();
        assert_eq!(mount_at(&publish).unwrap(), None);
        unmount(&publish).expect("unmounting twice is fine");
        unmount(&stage).unwrap();
        assert_eq!(mount_at(&stage).unwrap(), None);
        assert!(!stage.join("hello").exists(), "the file was on the volume");
    }

    #[tokio::test]
    async fn read_only_mount_and_writable_bind() {
        let mut s = Scratch::new(64 << 20).await;
        crate::os::run("mkfs.ext4", ["-q".as_ref(), "-F".as_ref(), s.device().as_os_str()])
            .await
            .unwrap();
        let stage = s.dir("stage");
        let publish = s.dir("publish");
        let device = s.device().to_path_buf();

        s.will_mount(&stage);
        mount_device(&device, &stage, "ext4", &strings(&["ro"])).unwrap();
        let m = mount_at(&stage).unwrap().unwrap();
        assert!(m.read_only());
        let err = std::fs::write(stage.join("x"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));

        // Binding a directory (not the whole mount) shows its root.
        s.will_mount(&publish);
        bind(&stage.join("lost+found"), &publish, false).unwrap();
        let b = mount_at(&publish).unwrap().unwrap();
        assert_eq!(b.root, Path::new("/lost+found"));
        unmount(&publish).unwrap();
        unmount(&stage).unwrap();
    }

    #[tokio::test]
    async fn mount_at_sees_the_top_of_a_stack() {
        let mut s = Scratch::new(64 << 20).await;
        crate::os::run("mkfs.ext4", ["-q".as_ref(), "-F".as_ref(), s.device().as_os_str()])
            .await
            .unwrap();
        let target = s.dir("target");
        let other = s.dir("other");
        s.will_mount(&target);
        mount_device(s.device(), &target, "ext4", &[]).unwrap();
        s.will_mount(&target);
        bind(&other, &target, true).unwrap();
        let top = mount_at(&target).unwrap().unwrap();
        assert!(top.read_only(), "the read-only bind is on top: {top:?}");
        // A trailing slash and a `..` detour name the same mount point.
        let detour = target.join("..").join("target/");
        assert_eq!(mount_at(&detour).unwrap().map(|m| m.id), Some(top.id));
        unmount(&target).unwrap();
        let below = mount_at(&target).unwrap().unwrap();
        assert_eq!(below.fs_type, "ext4");
        assert_eq!(below.id, top.parent);
        unmount(&target).unwrap();
        assert_eq!(mount_at(&target).unwrap(), None);
    }
}
