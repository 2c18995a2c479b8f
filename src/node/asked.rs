//! What a request asks for beyond its paths: the access mode, the file system and the mkfs
//! options the controller put in the volume context.

use super::*;

pub(super) fn capability(cap: &Option<VolumeCapability>) -> Result<&VolumeCapability> {
    let cap = cap
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("volume_capability is required".into()))?;
    check_capability(cap)?;
    Ok(cap)
}

/// Access modes that allow one publication on the node at a time.
pub(super) fn single_publish_mode(cap: &VolumeCapability) -> bool {
    matches!(
        cap.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::SingleNodeSingleWriter | Mode::SingleNodeReaderOnly)
    )
}

pub(super) fn read_only_mode(cap: &VolumeCapability) -> bool {
    matches!(
        cap.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
    )
}

/// The filesystem a mount capability asks for: its own fs_type, else the StorageClass's, else ext4.
pub(super) fn fs_type(cap: &VolumeCapability, context: &HashMap<String, String>) -> String {
    match &cap.access_type {
        Some(AccessType::Mount(m)) if !m.fs_type.is_empty() => m.fs_type.clone(),
        _ => context
            .get(FSTYPE_KEY)
            .filter(|f| !f.is_empty())
            .cloned()
            .unwrap_or_else(|| "ext4".into()),
    }
}

/// The mkfs options the controller put in the volume context, checked as the controller checks
/// StorageClass parameters: the context is the caller's to send, and a value mkfs refuses must
/// be the caller's INVALID_ARGUMENT, not a failed mkfs.
pub(super) fn mkfs_options(context: &HashMap<String, String>, fs: FsType) -> Result<format::MkfsOptions> {
    let opts = parse_mkfs_options(context)?;
    ebs::MkfsOptions {
        block_size: opts.block_size,
        inode_size: opts.inode_size,
        bytes_per_inode: opts.bytes_per_inode,
        number_of_inodes: opts.number_of_inodes,
        ext4_bigalloc: opts.ext4_bigalloc,
        ext4_cluster_size: opts.ext4_cluster_size,
    }
    .validate_for(fs)
    .map_err(|e| Error::InvalidArgument(format!("volume context: {e}")))?;
    // mke2fs makes blocks larger than a memory page when told to, but the kernel cannot mount
    // them: the volume would be formatted and never usable.
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u32::try_from(p).ok());
    if fs != FsType::Xfs
        && let (Some(block), Some(page)) = (opts.block_size, page)
        && block > page
    {
        return Err(Error::InvalidArgument(format!(
            "volume context blockSize={block}: {fs} blocks larger than this node's {page}-byte memory pages cannot be mounted"
        )));
    }
    Ok(opts)
}

pub(super) fn parse_mkfs_options(context: &HashMap<String, String>) -> Result<format::MkfsOptions> {
    fn number<T: std::str::FromStr>(ctx: &HashMap<String, String>, key: &str) -> Result<Option<T>> {
        ctx.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| Error::InvalidArgument(format!("volume context {key}={v:?} is not a number")))
            })
            .transpose()
    }
    Ok(format::MkfsOptions {
        block_size: number(context, "blockSize")?,
        inode_size: number(context, "inodeSize")?,
        bytes_per_inode: number(context, "bytesPerInode")?,
        number_of_inodes: number(context, "numberOfInodes")?,
        ext4_bigalloc: context.get("ext4BigAlloc").is_some_and(|v| v == "true"),
        ext4_cluster_size: number(context, "ext4ClusterSize")?,
        legacy_xfs: false,
    })
}
