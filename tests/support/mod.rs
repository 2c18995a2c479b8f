//! Test harness: starts the real `ebs-csi` binary on a socket in a temp dir and hands out typed
//! clients. Dropping it stops the driver and detaches every loop device backed by its files, even
//! when the test failed, so `losetup -a` stays clean.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ebs_csi::csi::controller_client::ControllerClient;
use ebs_csi::csi::identity_client::IdentityClient;
use ebs_csi::csi::modify::modify_client::ModifyClient;
use ebs_csi::csi::node_client::NodeClient;
use ebs_csi::csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode};
use ebs_csi::csi::*;
use tonic::transport::Channel;

pub mod apiserver;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod aws_snapshots;
pub mod imds;

pub const GIB: i64 = 1 << 30;
pub const NODE: &str = "node-1";
pub const ZONE: &str = "local-1a";

pub struct Driver {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    pub controller: ControllerClient<Channel>,
    pub identity: IdentityClient<Channel>,
    pub node: NodeClient<Channel>,
    /// The volume-modifier-for-k8s sidecar's service (proto/modify.proto).
    pub modifier: ModifyClient<Channel>,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ebs-csi")
}

impl Driver {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.dir.path().join("csi.sock").display())
    }

    /// Starts `ebs-csi serve --mode all` as node `node-1` in zone `local-1a`, plus `extra` flags.
    pub async fn start(extra: &[&str]) -> Driver {
        let mut args = vec!["--node-id", NODE, "--zone", ZONE];
        args.extend_from_slice(extra);
        Driver::start_custom(&args, &[]).await
    }

    /// Starts `ebs-csi serve` with exactly these flags (besides endpoint and data dir) and
    /// environment.
    pub async fn start_custom(args: &[&str], env: &[(&str, &str)]) -> Driver {
        let dir = tempfile::Builder::new()
            .prefix("ebs-csi-test")
            .tempdir()
            .expect("temp dir");
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (child, channel) = spawn(dir.path(), &extra_args, &env, None).await;
        Driver {
            dir,
            child: Some(child),
            extra_args,
            env,
            controller: ControllerClient::new(channel.clone()),
            node: NodeClient::new(channel.clone()),
            modifier: ModifyClient::new(channel.clone()),
            identity: IdentityClient::new(channel),
        }
    }

    /// Kills the driver with SIGKILL (a crash) and starts it again on the same data dir.
    pub async fn crash_and_restart(&mut self) {
        self.crash_and_restart_with_fault(None).await
    }

    /// As [`Driver::crash_and_restart`], with the new process told to stall at `fault`
    /// (`EBS_CSI_CRASH_AT`).
    pub async fn crash_and_restart_with_fault(&mut self, fault: Option<&str>) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let (child, channel) = spawn(self.dir.path(), &self.extra_args, &self.env, fault).await;
        self.child = Some(child);
        self.controller = ControllerClient::new(channel.clone());
        self.node = NodeClient::new(channel.clone());
        self.modifier = ModifyClient::new(channel.clone());
        self.identity = IdentityClient::new(channel);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Registers another node in this driver's local region by running a node-mode server
    /// on the same data dir until it is ready, then stopping it (the record stays).
    pub async fn register_node(&self, node: &str, zone: &str, limit: Option<u32>) {
        let sock = self.dir.path().join(format!("{node}.sock"));
        let mut args = vec![
            "serve".to_string(),
            "--mode".into(),
            "node".into(),
            "--endpoint".into(),
            format!("unix://{}", sock.display()),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--node-id".into(),
            node.into(),
            "--zone".into(),
            zone.into(),
        ];
        if let Some(l) = limit {
            args.push("--volume-attach-limit".into());
            args.push(l.to_string());
        }
        let mut child = Command::new(bin())
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn node");
        let _ = wait_for(&sock, &mut child).await;
        stop(&mut child);
    }

    /// Loop devices backed by this driver's volume images.
    pub fn loop_devices(&self) -> Vec<(PathBuf, PathBuf)> {
        loops_under(&self.data_dir())
    }

    /// kubelet's staging path for a volume handle, under this driver's temp root.
    pub fn staging_path(&self, handle: &str) -> String {
        use sha2::Digest;
        let hash = format!("{:x}", sha2::Sha256::digest(handle.as_bytes()));
        let p = self.dir.path().join(format!(
            "kubelet/plugins/kubernetes.io/csi/ebs.csi.aws.com/{hash}/globalmount"
        ));
        p.display().to_string()
    }

    /// kubelet's publish path for a pod's PV (mount), or its raw-block device file.
    pub fn target_path(&self, pod: &str, pv: &str, block: bool) -> String {
        let p = if block {
            self.dir
                .path()
                .join(format!("kubelet/pods/{pod}/volumeDevices/kubernetes.io~csi/{pv}"))
        } else {
            self.dir
                .path()
                .join(format!("kubelet/pods/{pod}/volumes/kubernetes.io~csi/{pv}/mount"))
        };
        p.display().to_string()
    }

    pub fn volume_file(&self, id: &str) -> PathBuf {
        self.data_dir().join("volumes").join(format!("{id}.img"))
    }
}

fn stop(child: &mut Child) {
    // SIGTERM first so the server drains and removes its socket; SIGKILL if it hangs.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn spawn(dir: &Path, extra: &[String], env: &[(String, String)], fault: Option<&str>) -> (Child, Channel) {
    let sock = dir.join("csi.sock");
    let mut args = vec![
        "serve".to_string(),
        "--endpoint".into(),
        format!("unix://{}", sock.display()),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("driver.log"))
        .expect("log file");
    let mut cmd = Command::new(bin());
    cmd.envs(env.iter().cloned());
    if let Some(step) = fault {
        cmd.env("EBS_CSI_CRASH_AT", step);
    }
    let mut child = cmd
        .args(&args)
        .env("EBS_CSI_LOG", "ebs_csi=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ebs-csi");
    let channel = wait_for(&sock, &mut child).await.unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.join("driver.log")).unwrap_or_default();
        panic!("driver did not start: {e}\n{log}")
    });
    (child, channel)
}

async fn wait_for(sock: &Path, child: &mut Child) -> Result<Channel, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let endpoint = format!("unix://{}", sock.display());
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if sock.exists()
            && let Ok(ch) = ebs_csi::client::connect(&endpoint).await
        {
            return Ok(ch);
        }
        if Instant::now() > deadline {
            return Err("no socket after 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// (device, backing file) of every loop device whose backing file is under `dir`.
pub fn loops_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            let b = PathBuf::from(b.trim_end().trim_end_matches(" (deleted)"));
            if b.starts_with(dir) {
                found.push((PathBuf::from("/dev").join(&name), b));
            }
        }
    }
    found
}

/// Mount points under `dir`, deepest (latest) first, read from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|t| t.starts_with(dir))
        .collect();
    found.reverse();
    found
}

/// A mountinfo path with the kernel's octal escapes (space, tab, newline, backslash) undone,
/// so that a target with a newline in its name is found and unmounted too.
pub fn unescape_mount_path(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(d) = bytes.get(i + 1..i + 4)
            && d[0] <= b'3'
            && d.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
        for target in mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        }
        for (dev, _) in loops_under(self.dir.path()) {
            let _ = Command::new("losetup").arg("--detach").arg(&dev).status();
        }
    }
}

// ---- request builders ----

pub fn mount_cap(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume::default())),
    }
}

pub fn block_cap(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

pub fn rwo() -> VolumeCapability {
    mount_cap(Mode::SingleNodeWriter)
}

pub fn params(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn create_req(name: &str, gib: i64, pairs: &[(&str, &str)]) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![rwo()],
        parameters: params(pairs),
        ..Default::default()
    }
}

pub fn publish_req(volume: &str, node: &str) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        volume_capability: Some(rwo()),
        ..Default::default()
    }
}

pub fn unpublish_req(volume: &str, node: &str) -> ControllerUnpublishVolumeRequest {
    ControllerUnpublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        ..Default::default()
    }
}

/// A content source restoring a snapshot.
pub fn from_snapshot(snapshot_id: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: snapshot_id.into(),
            },
        )),
    }
}

/// A content source cloning a volume.
pub fn from_volume(volume_id: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: volume_id.into(),
            },
        )),
    }
}

/// The gRPC code of a failed call, or panics with what it returned instead.
pub fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match r {
        Ok(v) => panic!("expected an error, got {:?}", v.into_inner()),
        Err(s) => s.code(),
    }
}
