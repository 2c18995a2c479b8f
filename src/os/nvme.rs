//! Reading an NVMe log page from a device: one Get Log Page admin command through the kernel's
//! NVMe passthrough ioctl. Only reads; the node's EBS metrics use it.

use std::os::fd::AsRawFd;
use std::path::Path;

/// `struct nvme_admin_cmd` of <linux/nvme_ioctl.h>: 72 bytes.
#[repr(C)]
#[derive(Default)]
struct AdminCommand {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

// NVME_IOCTL_ADMIN_CMD: _IOWR('N', 0x41, struct nvme_admin_cmd).
nix::ioctl_readwrite!(nvme_admin_command, b'N', 0x41, AdminCommand);

const GET_LOG_PAGE: u8 = 0x02;

/// Log page `id` of the NVMe device at `device`, `len` bytes (a multiple of 4).
pub fn read_log_page(device: &Path, id: u8, len: usize) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(device)?;
    let mut data = vec![0u8; len];
    let dwords = u32::try_from(len / 4)
        .ok()
        .filter(|&n| n > 0 && n <= 0x1_0000)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "log page length out of range"))?;
    let mut cmd = AdminCommand {
        opcode: GET_LOG_PAGE,
        nsid: 1,
        addr: data.as_mut_ptr() as u64,
        data_len: dwords * 4,
        // The log page id, and the number of dwords less one (0-based) in the upper half.
        cdw10: u32::from(id) | ((dwords - 1) << 16),
        ..Default::default()
    };
    // SAFETY: `cmd` is the kernel's struct layout, and `addr` points at `data`, which is
    // `data_len` bytes long and outlives the call.
    let status = unsafe { nvme_admin_command(file.as_raw_fd(), &mut cmd) }.map_err(std::io::Error::from)?;
    if status != 0 {
        return Err(std::io::Error::other(format!(
            "the device answered NVMe status {status:#x}"
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<super::AdminCommand>(), 72);
    }

    #[test]
    fn a_device_that_is_not_nvme_answers_with_an_error() {
        // /dev/null takes no NVMe ioctl: an error, never a page of zeros.
        assert!(super::read_log_page(std::path::Path::new("/dev/null"), 0xD0, 4096).is_err());
    }
}
