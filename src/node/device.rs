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
            if backing == image {
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
    async fn locate(&self, volume_id: &str, publish_context: &HashMap<String, String>) -> Result<PathBuf> {
        let image = self.image(volume_id)?;
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
