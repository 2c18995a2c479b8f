//! What the local backend reports at each scrape: volumes attached per node (the controller),
//! and each attached volume's I/O from its loop device's block counters (the node). EBS's
//! exceeded-IOPS and exceeded-throughput counters come from the EBS NVMe log page and have no
//! meaning for a loop device, so the local backend does not report them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Inner, LocalCloud};
use crate::metrics::{Attached, VolumeIo, VolumeIoCollector};
use crate::os::{blockdev, loopdev};

impl Inner {
    fn attached_per_node(&self) -> Vec<(String, u64)> {
        let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
        for r in self.store.all_volumes().unwrap_or_default() {
            for a in &r.volume.attachments {
                *per_node.entry(a.node.clone()).or_default() += 1;
            }
        }
        per_node.into_iter().collect()
    }

    fn volume_io(&self, node: &str) -> Vec<VolumeIo> {
        let mut out = Vec::new();
        let devices = loopdev::list().unwrap_or_default();
        for r in self.store.all_volumes().unwrap_or_default() {
            if !r.volume.attachments.iter().any(|a| a.node == node) {
                continue;
            }
            let image = self.volume_path(&r.volume.id);
            let Some(dev) = devices.iter().find(|d| loopdev::backs(&d.device, &image)) else {
                continue;
            };
            let name = dev.device.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some(s) = blockdev::io_stats(name) else {
                continue;
            };
            out.push(VolumeIo {
                volume_id: r.volume.id.clone(),
                instance_id: node.to_owned(),
                read_ops: s.read_ios,
                write_ops: s.write_ios,
                // The block layer counts 512-byte sectors whatever the device's block size.
                read_bytes: s.read_sectors.saturating_mul(512),
                write_bytes: s.write_sectors.saturating_mul(512),
                read_seconds: s.read_ms as f64 / 1000.0,
                write_seconds: s.write_ms as f64 / 1000.0,
                queue_length: s.in_flight,
                ebs: None,
            });
        }
        out
    }
}

impl LocalCloud {
    /// Volumes attached per node, read at each scrape.
    pub fn attached_collector(&self) -> Attached {
        let inner: Arc<Inner> = self.inner.clone();
        Attached::new(move || inner.attached_per_node())
    }

    /// The I/O of every volume attached to `node`, read at each scrape.
    pub fn io_collector(&self, node: &str) -> VolumeIoCollector {
        let inner: Arc<Inner> = self.inner.clone();
        let node = node.to_owned();
        VolumeIoCollector::new(move || inner.volume_io(&node))
    }
}
