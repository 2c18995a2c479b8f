//! Capacity and inode usage of a mounted filesystem (NodeGetVolumeStats).

use std::path::Path;

use super::mount::errno_error;
use crate::error::Result;

/// Byte and inode counts of the filesystem holding a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    pub total_bytes: u64,
    /// What an unprivileged writer can still use (blocks reserved for root excluded).
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub used_inodes: u64,
}

/// statvfs(2) of `path`; NotFound when the path does not exist.
pub fn fs_stats(path: &Path) -> Result<FsStats> {
    let st =
        nix::sys::statvfs::statvfs(path).map_err(|e| errno_error(format_args!("statvfs {}", path.display()), e))?;
    // Block counts are in fragment-size units, not block-size ones.
    let unit = st.fragment_size() as u64;
    let bytes = |blocks: u64| blocks.saturating_mul(unit);
    let (blocks, free, available) = (
        st.blocks() as u64,
        st.blocks_free() as u64,
        st.blocks_available() as u64,
    );
    let (files, files_free) = (st.files() as u64, st.files_free() as u64);
    Ok(FsStats {
        total_bytes: bytes(blocks),
        available_bytes: bytes(available),
        // Used is total minus free, reserved blocks included, as df counts it.
        used_bytes: bytes(blocks.saturating_sub(free)),
        total_inodes: files,
        free_inodes: files_free,
        used_inodes: files.saturating_sub(files_free),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::os::format::{MkfsOptions, mkfs};
    use crate::os::mount::scratch::Scratch;
    use crate::os::mount::{mount_device, unmount};

    #[test]
    fn missing_path_is_not_found() {
        let s = Scratch::without_device(0);
        let err = fs_stats(&s.dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn counts_follow_what_is_written() {
        let mut s = Scratch::new(64 << 20).await;
        let device = s.device().to_path_buf();
        mkfs("ext4", &device, &MkfsOptions::default()).await.unwrap();
        let stage = s.dir("stage");
        s.will_mount(&stage);
        mount_device(&device, &stage, "ext4", &[]).unwrap();

        let before = fs_stats(&stage).unwrap();
        assert!(
            before.total_bytes > 48 << 20 && before.total_bytes <= 64 << 20,
            "{before:?}"
        );
        assert!(
            before.available_bytes < before.total_bytes - before.used_bytes,
            "ext4 reserves 5% for root"
        );
        assert_eq!(before.used_inodes + before.free_inodes, before.total_inodes);
        assert!(before.used_inodes >= 11, "ext4 starts with its reserved inodes in use");

        let data = vec![1u8; 8 << 20];
        for i in 0..100 {
            std::fs::write(stage.join(format!("f{i}")), if i == 0 { &data[..] } else { b"x" }).unwrap();
        }
        nix::unistd::syncfs(std::fs::File::open(&stage).unwrap()).unwrap();
        let after = fs_stats(&stage).unwrap();
        assert_eq!(after.total_bytes, before.total_bytes);
        assert!(
            after.used_bytes >= before.used_bytes + (8 << 20),
            "{before:?} → {after:?}"
        );
        assert!(after.available_bytes <= before.available_bytes - (8 << 20));
        assert_eq!(after.used_inodes, before.used_inodes + 100);
        assert_eq!(after.free_inodes, before.free_inodes - 100);

        unmount(&stage).unwrap();
    }
}
