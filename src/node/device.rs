//! Which block device is this volume? A locator answers only with a device it has proven to
//! belong to the volume, because mounting (or formatting!) the wrong disk is the worst thing a
//! node plugin can do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cloud::is_id;
use crate::error::{Error, Result};
use crate::os::loopdev;

/// How long a device that is still appearing is waited for.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(3);

#[tonic::async_trait]
pub trait DeviceLocator: Send + Sync + 'static {
    /// The device holding `volume_id`, proven to be that volume's. `publish_context` is what
    /// ControllerPublishVolume returned (its `devicePath` is a hint, never trusted alone).
    async fn locate(&self, volume_id: &str, publish_context: &HashMap<String, String>) -> Result<PathBuf>;

    /// Whether block device `device` (`/dev/<kernel name>`) is `volume_id`'s, by the same
    /// evidence `locate` uses. Every node call that acts on something it found at a path asks
    /// this first (see `node::proof`).
    fn owns(&self, volume_id: &str, device: &Path) -> bool;

    /// The backend's own store on this host, if it has one there: no volume may be mounted on
    /// it or on a directory above it, which would hide it from the driver.
    fn store(&self) -> Option<&Path> {
        None
    }
}

/// The local backend's devices: loop devices whose backing file is the volume's image.
pub struct LoopLocator {
    volumes_dir: PathBuf,
}

impl LoopLocator {
    pub fn new(data_dir: &Path) -> Self {
        LoopLocator {
            volumes_dir: data_dir.join("volumes"),
        }
    }

    fn image(&self, volume_id: &str) -> Result<PathBuf> {
        // Checked before it becomes part of a path.
        if !is_id("vol", volume_id) {
            return Err(Error::NotFound(format!(
                "{volume_id:?} is not a volume id of this driver"
            )));
        }
        Ok(self.volumes_dir.join(format!("{volume_id}.img")))
    }

    /// One look: the proven device, Ok(None) when nothing is there yet, an error when the
    /// hinted device belongs to something else.
    fn look(&self, volume_id: &str, image: &Path, hint: Option<&Path>) -> Result<Option<PathBuf>> {
        if let Some(dev) = hint
            && let Some(backing) = loopdev::backing_file(dev)
        {
            if loopdev::backs(dev, image) {
                return Ok(Some(dev.to_owned()));
            }
            return Err(Error::FailedPrecondition(format!(
                "device {} is backed by {}, not by volume {volume_id}; refusing to use it",
                dev.display(),
                backing.display()
            )));
        }
        Ok(loopdev::find(image)?.into_iter().next().map(|l| l.device))
    }
}

#[tonic::async_trait]
impl DeviceLocator for LoopLocator {
    fn store(&self) -> Option<&Path> {
        self.volumes_dir.parent()
    }

    fn owns(&self, volume_id: &str, device: &Path) -> bool {
        self.image(volume_id).is_ok_and(|image| loopdev::backs(device, &image))
    }

    async fn locate(&self, volume_id: &str, publish_context: &HashMap<String, String>) -> Result<PathBuf> {
        let image = self.image(volume_id)?;
        // The node shares the store: a volume without an image does not exist at all.
        if !image.exists() {
            return Err(Error::NotFound(format!("volume {volume_id} does not exist")));
        }
        let hint = publish_context.get("devicePath").map(PathBuf::from);
        if let Some(h) = &hint
            && !h.to_str().is_some_and(|s| s.starts_with("/dev/loop"))
        {
            return Err(Error::FailedPrecondition(format!(
                "device {} for volume {volume_id} is not a loop device; the local backend attaches only loop devices",
                h.display()
            )));
        }
        let deadline = tokio::time::Instant::now() + APPEAR_TIMEOUT;
        loop {
            if let Some(dev) = self.look(volume_id, &image, hint.as_deref())? {
                return Ok(dev);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::FailedPrecondition(format!(
                    "volume {volume_id} has no device on this node{} after {APPEAR_TIMEOUT:?}; is it attached here (ControllerPublishVolume)?",
                    hint.as_ref()
                        .map(|h| format!(" ({} does not exist)", h.display()))
                        .unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// EBS on AWS. Nitro: the NVMe device whose controller serial is the volume id without its dash
/// (`vol0123…`), found through `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123…` or, if
/// udev made no link, by reading every NVMe serial in sysfs; the link alone is never trusted.
/// Xen (no NVMe EBS devices at all): the hinted `/dev/xvd*` or its `/dev/sd*` alias.
pub struct EbsLocator {
    by_id: PathBuf,
    sys_block: PathBuf,
    dev: PathBuf,
}

impl EbsLocator {
    /// `by_id` and `sys_block` are /dev/disk/by-id and /sys/block on a real node; tests point
    /// them at a tree of their own over loop devices.
    pub fn new(by_id: PathBuf, sys_block: PathBuf) -> Self {
        EbsLocator {
            by_id,
            sys_block,
            dev: PathBuf::from("/dev"),
        }
    }

    fn serial_of(&self, device: &Path) -> Option<String> {
        let name = device.file_name()?.to_str()?;
        let serial = std::fs::read_to_string(self.sys_block.join(name).join("device/serial")).ok()?;
        Some(serial.trim().to_owned())
    }

    /// One look for the device whose serial is `serial`.
    fn look(&self, volume_id: &str, serial: &str, hint: Option<&Path>) -> Result<Option<PathBuf>> {
        let link = self.by_id.join(format!("nvme-Amazon_Elastic_Block_Store_{serial}"));
        if let Ok(dev) = std::fs::canonicalize(&link) {
            match self.serial_of(&dev) {
                Some(s) if s == serial => return Ok(Some(dev)),
                other => warn_decoy(volume_id, &dev, other.as_deref()),
            }
        }
        // No (trustworthy) link: read the serials themselves.
        let mut any_nvme = false;
        if let Ok(entries) = std::fs::read_dir(&self.sys_block) {
            for e in entries.flatten() {
                let name = e.file_name();
                let dev = self.dev.join(&name);
                if let Some(s) = self.serial_of(&dev) {
                    any_nvme = true;
                    if s == serial {
                        return Ok(Some(dev));
                    }
                }
            }
        }
        // Xen instances have no serials to check: the attach's device name is all there is.
        if !any_nvme && let Some(h) = hint {
            let alias = h
                .to_str()
                .and_then(|s| s.strip_prefix("/dev/xvd"))
                .map(|r| self.dev.join(format!("sd{r}")));
            for candidate in std::iter::once(h.to_owned()).chain(alias) {
                if candidate.exists() {
                    return Ok(Some(candidate));
                }
            }
        }
        Ok(None)
    }
}

impl EbsLocator {
    fn any_nvme(&self) -> bool {
        std::fs::read_dir(&self.sys_block).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| self.serial_of(&self.dev.join(e.file_name())).is_some())
        })
    }

    /// A whole disk (not a partition: those have no /sys/block entry) named as Xen names them.
    fn is_xen_disk(&self, device: &Path) -> bool {
        device
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| (n.starts_with("xvd") || n.starts_with("sd")) && self.sys_block.join(n).exists())
    }
}

fn warn_decoy(volume_id: &str, dev: &Path, serial: Option<&str>) {
    tracing::warn!(
        volume = volume_id,
        device = %dev.display(),
        serial = serial.unwrap_or("none"),
        "the by-id link for this volume points at a device with another serial; not using it"
    );
}

#[tonic::async_trait]
impl DeviceLocator for EbsLocator {
    fn owns(&self, volume_id: &str, device: &Path) -> bool {
        if !crate::cloud::is_ec2_id("vol", volume_id) {
            return false;
        }
        match self.serial_of(device) {
            Some(serial) => serial == volume_id.replace('-', ""),
            // Xen instances give their EBS disks no identity at all; there, a whole disk with a
            // Xen name is as much proof as exists. On Nitro every EBS disk has its serial.
            None => !self.any_nvme() && self.is_xen_disk(device),
        }
    }

    async fn locate(&self, volume_id: &str, publish_context: &HashMap<String, String>) -> Result<PathBuf> {
        if !crate::cloud::is_ec2_id("vol", volume_id) {
            return Err(Error::NotFound(format!("{volume_id:?} is not an EBS volume id")));
        }
        let serial = volume_id.replace('-', "");
        let hint = publish_context.get("devicePath").map(PathBuf::from);
        let deadline = tokio::time::Instant::now() + APPEAR_TIMEOUT;
        loop {
            if let Some(dev) = self.look(volume_id, &serial, hint.as_deref())? {
                return Ok(dev);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::FailedPrecondition(format!(
                    "no device on this node has serial {serial} (volume {volume_id}) after {APPEAR_TIMEOUT:?}; \
                     is it attached here (ControllerPublishVolume)?"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
