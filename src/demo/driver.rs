//! The driver the demo plays against: `ebs-csi serve --mode all` on the local backend, started
//! as a child process of this binary, and what the host needs for it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::NODE;
use crate::error::{Error, Result};
use crate::manifest::Plan;
use crate::topology::WELL_KNOWN_ZONE_KEY;

/// Why the demo cannot run here, in one sentence, or None.
pub(super) fn precondition() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("ebs-csi demo needs root: it makes loop devices and mounts filesystems".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("ebs-csi demo needs loop devices, and /dev/loop-control is missing (modprobe loop?)".into());
    }
    for tool in ["mkfs.ext4", "losetup", "blkid", "resize2fs"] {
        let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!("ebs-csi demo needs {tool} (util-linux / e2fsprogs)"));
        }
    }
    None
}

/// `ebs-csi serve --mode all` on the local backend, as the plan's node, in the plan's region.
pub(super) fn start_driver(dir: &Path, plan: &Plan) -> Result<Child> {
    let exe = std::env::current_exe().map_err(|e| Error::internal("cannot find this binary", e))?;
    let log = std::fs::File::create(dir.join("driver.log"))
        .map_err(|e| Error::internal("cannot create the driver log", e))?;
    let zone = plan.node.topology.get(WELL_KNOWN_ZONE_KEY).cloned().unwrap_or_default();
    Command::new(exe)
        .args(["serve", "--mode", "all", "--backend", "local", "--node-id", NODE])
        .arg("--zone")
        .arg(zone)
        .arg("--zones")
        .arg(plan.zones.join(","))
        .arg("--endpoint")
        .arg(format!("unix://{}", dir.join("csi.sock").display()))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::internal("cannot start the driver", e))
}

pub(super) async fn connect(dir: &Path, child: &mut Child) -> Result<Channel> {
    let endpoint = format!("unix://{}", dir.join("csi.sock").display());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("driver.log")).unwrap_or_default();
            return Err(Error::Internal(format!("the driver exited ({s}):\n{log}")));
        }
        if let Ok(ch) = crate::client::connect(&endpoint).await {
            return Ok(ch);
        }
        if Instant::now() > deadline {
            return Err(Error::Unavailable(
                "the driver did not start listening within 20 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(super) fn stop_driver(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}
