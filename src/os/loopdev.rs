//! Loop devices, read from sysfs and driven with util-linux's `losetup`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
    Ok(list()?.into_iter().filter(|l| l.backing_file == file).collect())
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
    let out = super::run(
        "losetup",
        [
            "--find".as_ref(),
            "--show".as_ref(),
            "--nooverlap".as_ref(),
            file.as_os_str(),
        ],
    )
    .await?;
    let device = out.trim();
    if device.is_empty() {
        return Err(Error::Internal(format!(
            "losetup attached {} but printed no device",
            file.display()
        )));
    }
    Ok(PathBuf::from(device))
}

/// Detaches a loop device. A device already gone (or bound to another file) is left alone.
pub async fn detach(device: &Path, expected_backing: &Path) -> Result<()> {
    match backing_file(device) {
        Some(backing) if backing == expected_backing => {
            super::run("losetup", ["--detach".as_ref(), device.as_os_str()]).await?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Makes the loop device see its backing file's new size.
pub async fn refresh_capacity(device: &Path) -> Result<()> {
    super::run("losetup", ["--set-capacity".as_ref(), device.as_os_str()]).await?;
    Ok(())
}
