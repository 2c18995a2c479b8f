//! The aws node's per-volume metrics: for every EBS volume this node has mounted for Kubernetes
//! (a mount under `--csi-mount-point-prefix`), the counters EBS keeps in the volume's NVMe log
//! page. A device counts as an EBS volume only by its NVMe serial (`vol…`), as the device proof
//! does; the log page's own magic is checked again before a figure is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::warn;

use crate::ebs::{EbsLogPage, LOG_PAGE_ID, LOG_PAGE_LEN, LatencyBin};
use crate::metrics::{EbsOnly, VolumeIo};
use crate::os::{blockdev, mount, nvme};

const MICROS: f64 = 1e6;

/// Where the log pages come from.
#[derive(Clone, Debug)]
pub enum LogPages {
    /// The device itself (an NVMe admin command): a real node.
    Device,
    /// `DIR/<kernel name>` files holding each device's page: a stand-in where no EBS NVMe
    /// device exists (tests).
    Files(PathBuf),
}

pub struct EbsIo {
    pub instance_id: String,
    /// Mounts under here are the ones Kubernetes asked for.
    pub prefix: PathBuf,
    /// /sys/block: each device's NVMe serial.
    pub sys_block: PathBuf,
    pub pages: LogPages,
    scrapes: AtomicU64,
    errors: AtomicU64,
}

impl EbsIo {
    pub fn new(instance_id: String, prefix: PathBuf, sys_block: PathBuf, pages: LogPages) -> Self {
        EbsIo {
            instance_id,
            prefix,
            sys_block,
            pages,
            scrapes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// Scrapes so far, and devices whose page could not be read or was not EBS's.
    pub fn scrape_counts(&self) -> (u64, u64) {
        (
            self.scrapes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    /// The kernel names of the block devices mounted under the prefix: a filesystem's device,
    /// or the device node bound at a raw block volume's path.
    fn devices(&self) -> Vec<String> {
        let mounts = match mount::mounts() {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "cannot list mounts for the EBS metrics");
                self.errors.fetch_add(1, Ordering::Relaxed);
                return Vec::new();
            }
        };
        let mut names: Vec<String> = mounts
            .iter()
            .filter(|m| m.target.starts_with(&self.prefix))
            .filter_map(|m| match blockdev::backing(&m.target)? {
                blockdev::Backing::Device(n) | blockdev::Backing::Filesystem(n) => blockdev::kernel_name(n),
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The EBS volume id a device's serial names (`vol0123…` is `vol-0123…`), if it names one.
    fn volume_of(&self, name: &str) -> Option<String> {
        let serial = std::fs::read_to_string(self.sys_block.join(name).join("device/serial")).ok()?;
        let id = format!("vol-{}", serial.trim().strip_prefix("vol")?);
        crate::cloud::is_ec2_id("vol", &id).then_some(id)
    }

    fn page(&self, name: &str) -> std::io::Result<Vec<u8>> {
        match &self.pages {
            LogPages::Device => nvme::read_log_page(&Path::new("/dev").join(name), LOG_PAGE_ID, LOG_PAGE_LEN),
            LogPages::Files(dir) => std::fs::read(dir.join(name)),
        }
    }

    /// Each EBS volume mounted for Kubernetes, with what its log page says now.
    pub fn volumes(&self) -> Vec<VolumeIo> {
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        let mut by_volume = BTreeMap::new();
        for name in self.devices() {
            let Some(volume_id) = self.volume_of(&name) else {
                continue;
            };
            let page = self
                .page(&name)
                .map_err(|e| e.to_string())
                .and_then(|bytes| EbsLogPage::parse(&bytes).map_err(|e| e.to_string()));
            match page {
                Ok(page) => {
                    by_volume.insert(volume_id.clone(), self.figures(volume_id, &page));
                }
                Err(error) => {
                    warn!(volume = %volume_id, device = %name, %error, "cannot read the volume's EBS log page");
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        by_volume.into_values().collect()
    }

    fn figures(&self, volume_id: String, p: &EbsLogPage) -> VolumeIo {
        let bins = |bins: &[LatencyBin]| -> Vec<(f64, u64)> {
            bins.iter().map(|b| (b.upper_us as f64 / MICROS, b.count)).collect()
        };
        VolumeIo {
            volume_id,
            instance_id: self.instance_id.clone(),
            read_ops: p.read_ops,
            write_ops: p.write_ops,
            read_bytes: p.read_bytes,
            write_bytes: p.write_bytes,
            read_seconds: p.read_time_us as f64 / MICROS,
            write_seconds: p.write_time_us as f64 / MICROS,
            queue_length: p.queue_length,
            ebs: Some(EbsOnly {
                exceeded_iops_seconds: p.ebs_iops_exceeded_us as f64 / MICROS,
                exceeded_throughput_seconds: p.ebs_throughput_exceeded_us as f64 / MICROS,
                ec2_exceeded_iops_seconds: p.ec2_iops_exceeded_us as f64 / MICROS,
                ec2_exceeded_throughput_seconds: p.ec2_throughput_exceeded_us as f64 / MICROS,
                read_latency: bins(&p.read_latency),
                write_latency: bins(&p.write_latency),
            }),
        }
    }
}
