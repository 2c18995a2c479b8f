//! The flags several calls share, and how they become CSI request fields.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::Failure;
use crate::csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode};
use crate::csi::volume_content_source::{SnapshotSource, Type as SourceType, VolumeSource};
use crate::csi::{CapacityRange, Topology, TopologyRequirement, VolumeCapability, VolumeContentSource};

const GIB: i64 = 1 << 30;

/// `key=value`, split at the first `=`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// One topology: `key=value[,key=value…]`.
pub fn topology(s: &str) -> Result<Topology, String> {
    let segments = s.split(',').map(key_value).collect::<Result<HashMap<_, _>, _>>()?;
    Ok(Topology { segments })
}

pub fn map(pairs: &[(String, String)]) -> HashMap<String, String> {
    pairs.iter().cloned().collect()
}

/// CSI's access modes, in kebab-case.
#[derive(Clone, Copy, ValueEnum)]
pub enum AccessModeArg {
    SingleNodeWriter,
    SingleNodeReaderOnly,
    MultiNodeReaderOnly,
    MultiNodeSingleWriter,
    MultiNodeMultiWriter,
    SingleNodeSingleWriter,
    SingleNodeMultiWriter,
}

impl From<AccessModeArg> for Mode {
    fn from(m: AccessModeArg) -> Mode {
        match m {
            AccessModeArg::SingleNodeWriter => Mode::SingleNodeWriter,
            AccessModeArg::SingleNodeReaderOnly => Mode::SingleNodeReaderOnly,
            AccessModeArg::MultiNodeReaderOnly => Mode::MultiNodeReaderOnly,
            AccessModeArg::MultiNodeSingleWriter => Mode::MultiNodeSingleWriter,
            AccessModeArg::MultiNodeMultiWriter => Mode::MultiNodeMultiWriter,
            AccessModeArg::SingleNodeSingleWriter => Mode::SingleNodeSingleWriter,
            AccessModeArg::SingleNodeMultiWriter => Mode::SingleNodeMultiWriter,
        }
    }
}

/// A volume capability: a raw block device, or a mounted filesystem.
#[derive(Args)]
pub struct CapabilityArgs {
    /// A raw block volume (instead of a mounted filesystem).
    #[arg(long, conflicts_with_all = ["fs_type", "mount_flags", "volume_mount_group"])]
    pub block: bool,
    /// The filesystem of a mount volume (ext4, xfs, …; empty: the driver's default).
    #[arg(long, value_name = "FS")]
    pub fs_type: Option<String>,
    /// A mount option (repeatable).
    #[arg(long = "mount-flag", value_name = "FLAG")]
    pub mount_flags: Vec<String>,
    /// The group id the mounted volume is made accessible to.
    #[arg(long, value_name = "GID")]
    pub volume_mount_group: Option<String>,
    /// The access mode [default: single-node-writer].
    #[arg(long, value_enum)]
    pub access_mode: Option<AccessModeArg>,
}

impl CapabilityArgs {
    /// The capability the flags describe; a mount volume, single-node-writer, when none is given.
    pub fn capability(&self) -> VolumeCapability {
        let access_type = if self.block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume {
                fs_type: self.fs_type.clone().unwrap_or_default(),
                mount_flags: self.mount_flags.clone(),
                volume_mount_group: self.volume_mount_group.clone().unwrap_or_default(),
            })
        };
        let mode: Mode = self.access_mode.unwrap_or(AccessModeArg::SingleNodeWriter).into();
        VolumeCapability {
            access_mode: Some(AccessMode { mode: mode as i32 }),
            access_type: Some(access_type),
        }
    }

    /// For calls where the capability is optional: one only when a capability flag was given.
    pub fn if_given(&self) -> Option<VolumeCapability> {
        let given = self.block
            || self.fs_type.is_some()
            || !self.mount_flags.is_empty()
            || self.volume_mount_group.is_some()
            || self.access_mode.is_some();
        given.then(|| self.capability())
    }
}

/// Secrets, read from a file.
#[derive(Args)]
pub struct SecretsArgs {
    /// Secrets for the call: a YAML mapping of string keys to string values (a JSON object is
    /// YAML too), as a Kubernetes Secret's `stringData`.
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
}

impl SecretsArgs {
    pub fn load(&self) -> Result<HashMap<String, String>, Failure> {
        let Some(path) = &self.secrets_file else {
            return Ok(HashMap::new());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("--secrets-file {}: {e}", path.display())))?;
        if text.trim().is_empty() {
            return Ok(HashMap::new());
        }
        serde_yaml_ng::from_str::<HashMap<String, String>>(&text).map_err(|e| {
            Failure::Usage(format!(
                "--secrets-file {}: not a mapping of strings to strings: {e}",
                path.display()
            ))
        })
    }
}

/// A capacity range: the size asked for, and a ceiling.
#[derive(Args)]
pub struct CapacityArgs {
    /// Required size in GiB.
    #[arg(long, value_name = "GIB", conflicts_with = "required_bytes", value_parser = clap::value_parser!(i64).range(0..=(i64::MAX >> 30)))]
    pub size_gib: Option<i64>,
    /// Required size in bytes.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(i64).range(0..))]
    pub required_bytes: Option<i64>,
    /// The largest size acceptable, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(i64).range(0..))]
    pub limit_bytes: Option<i64>,
}

impl CapacityArgs {
    /// The range the flags give, or None when none is given.
    pub fn range(&self) -> Option<CapacityRange> {
        let required = self.size_gib.map(|g| g * GIB).or(self.required_bytes);
        (required.is_some() || self.limit_bytes.is_some()).then(|| CapacityRange {
            required_bytes: required.unwrap_or(0),
            limit_bytes: self.limit_bytes.unwrap_or(0),
        })
    }
}

/// Paging for the list calls.
#[derive(Args)]
pub struct PageArgs {
    /// At most this many entries (0: as many as the driver gives).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    pub max_entries: i32,
    /// Continue from a previous answer's next token.
    #[arg(long, default_value = "", value_name = "TOKEN")]
    pub starting_token: String,
}

/// What a new volume is made from.
#[derive(Args)]
pub struct SourceArgs {
    /// Restore this snapshot.
    #[arg(long, value_name = "SNAPSHOT_ID", conflicts_with = "from_volume")]
    pub from_snapshot: Option<String>,
    /// Clone this volume.
    #[arg(long, value_name = "VOLUME_ID")]
    pub from_volume: Option<String>,
}

impl SourceArgs {
    pub fn source(&self) -> Option<VolumeContentSource> {
        let t = match (&self.from_snapshot, &self.from_volume) {
            (Some(id), _) => SourceType::Snapshot(SnapshotSource {
                snapshot_id: id.clone(),
            }),
            (None, Some(id)) => SourceType::Volume(VolumeSource { volume_id: id.clone() }),
            (None, None) => return None,
        };
        Some(VolumeContentSource { r#type: Some(t) })
    }
}

/// Where a new volume may and should be.
#[derive(Args)]
pub struct TopologyArgs {
    /// A topology the volume must be accessible from: `key=value[,key=value…]` (repeatable).
    #[arg(long = "requisite-topology", value_name = "SEGMENTS", value_parser = topology)]
    pub requisite: Vec<Topology>,
    /// A topology preferred, in order: `key=value[,key=value…]` (repeatable).
    #[arg(long = "preferred-topology", value_name = "SEGMENTS", value_parser = topology)]
    pub preferred: Vec<Topology>,
}

impl TopologyArgs {
    pub fn requirement(&self) -> Option<TopologyRequirement> {
        (!self.requisite.is_empty() || !self.preferred.is_empty()).then(|| TopologyRequirement {
            requisite: self.requisite.clone(),
            preferred: self.preferred.clone(),
        })
    }
}
