//! Checks on CSI volume capabilities, shared by the controller and the node.

use crate::csi::VolumeCapability;
use crate::csi::volume_capability::{AccessType, access_mode::Mode};
use crate::ebs::FsType;
use crate::error::{Error, Result};

/// A request's capabilities, checked: what access they ask for, and whether that is block.
pub struct CapabilitySummary {
    pub block: bool,
    pub multi_node: bool,
}

pub fn check_capability(cap: &VolumeCapability) -> Result<CapabilitySummary> {
    let block = match &cap.access_type {
        Some(AccessType::Block(_)) => true,
        Some(AccessType::Mount(m)) => {
            if !m.fs_type.is_empty() && m.fs_type.parse::<FsType>().is_err() {
                return Err(Error::InvalidArgument(format!(
                    "volume capability fs_type {:?} is not supported; use ext2, ext3, ext4 or xfs",
                    m.fs_type
                )));
            }
            false
        }
        None => {
            return Err(Error::InvalidArgument(
                "volume capability needs an access type: mount or block".into(),
            ));
        }
    };
    let mode = cap.access_mode.as_ref().map(|m| m.mode()).unwrap_or(Mode::Unknown);
    let multi_node = match mode {
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter => false,
        Mode::MultiNodeMultiWriter if block => true,
        Mode::MultiNodeMultiWriter => {
            return Err(Error::InvalidArgument(
                "MULTI_NODE_MULTI_WRITER needs block access: a filesystem cannot be mounted on several nodes at once"
                    .into(),
            ));
        }
        Mode::Unknown => return Err(Error::InvalidArgument("volume capability needs an access mode".into())),
        other => {
            return Err(Error::InvalidArgument(format!(
                "access mode {} is not supported by EBS volumes",
                other.as_str_name()
            )));
        }
    };
    Ok(CapabilitySummary { block, multi_node })
}

/// Checks a request's list of capabilities: at least one, all valid, all mount or all block.
pub fn check_capabilities(caps: &[VolumeCapability]) -> Result<CapabilitySummary> {
    let mut summary: Option<CapabilitySummary> = None;
    for cap in caps {
        let s = check_capability(cap)?;
        if let Some(prev) = &summary
            && prev.block != s.block
        {
            return Err(Error::InvalidArgument(
                "volume capabilities mix mount and block access; a volume is one or the other".into(),
            ));
        }
        let multi_node = s.multi_node || summary.as_ref().is_some_and(|p| p.multi_node);
        summary = Some(CapabilitySummary {
            block: s.block,
            multi_node,
        });
    }
    summary.ok_or_else(|| Error::InvalidArgument("volume_capabilities is required".into()))
}
