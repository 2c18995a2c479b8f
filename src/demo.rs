//! `ebs-csi demo`: the seed's life cycle end to end on the local backend, every step a real
//! gRPC call to a real driver process, playing the provisioner, attacher, resizer, snapshotter
//! and kubelet with the calls and paths they use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::csi::controller_client::ControllerClient;
use crate::csi::node_client::NodeClient;
use crate::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use crate::csi::*;
use crate::error::{Error, Result};

const DRIVER: &str = "ebs.csi.aws.com";
const NODE: &str = "demo-node";
const ZONE: &str = "local-1a";
const PAGE: &str = "<h1>Hello from nginx on an ebs-csi volume</h1>\n";

/// What was made, so it can be unmade in reverse order whatever happens.
enum Undo {
    Volume(String),
    Attach(String),
    Stage(String, String),
    Publish(String, String),
    Snapshot(String),
}

struct Demo {
    controller: ControllerClient<Channel>,
    node: NodeClient<Channel>,
    root: PathBuf,
    made: Vec<Undo>,
    started: Instant,
}

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn status(e: tonic::Status) -> Error {
    Error::Internal(format!("{:?}: {}", e.code(), e.message()))
}

fn capability() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        // The provisioner's --default-fstype=ext4 lands here.
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
    }
}

fn zone_topology(zone: &str) -> Topology {
    Topology {
        segments: HashMap::from([("topology.kubernetes.io/zone".to_owned(), zone.to_owned())]),
    }
}

impl Demo {
    fn step(&self, name: &str, state: &str, facts: &str) {
        println!(
            "{:>7.2}s  {name:<26} {state:<11} {facts}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// kubelet's staging path for a volume handle.
    fn staging(&self, handle: &str) -> PathBuf {
        let hash = format!("{:x}", Sha256::digest(handle.as_bytes()));
        self.root.join(format!(
            "var/lib/kubelet/plugins/kubernetes.io/csi/{DRIVER}/{hash}/globalmount"
        ))
    }

    /// kubelet's publish path for a pod and PV.
    fn target(&self, pod_uid: &str, pv: &str) -> PathBuf {
        self.root.join(format!(
            "var/lib/kubelet/pods/{pod_uid}/volumes/kubernetes.io~csi/{pv}/mount"
        ))
    }

    async fn create(&mut self, pv: &str, gib: i64, source: Option<VolumeContentSource>) -> Result<Volume> {
        // WaitForFirstConsumer: the selected node's zone preferred, every node zone requisite.
        let req = CreateVolumeRequest {
            name: pv.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: gib << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![capability()],
            parameters: HashMap::from([
                ("csi.storage.k8s.io/pvc/name".into(), "ebs-claim".into()),
                ("csi.storage.k8s.io/pvc/namespace".into(), "dev-ns".into()),
                ("csi.storage.k8s.io/pv/name".into(), pv.into()),
            ]),
            volume_content_source: source,
            accessibility_requirements: Some(TopologyRequirement {
                requisite: vec![zone_topology(ZONE)],
                preferred: vec![zone_topology(ZONE)],
            }),
            ..Default::default()
        };
        let v = self
            .controller
            .create_volume(req)
            .await
            .map_err(status)?
            .into_inner()
            .volume;
        let v = v.ok_or_else(|| Error::Internal("CreateVolume returned no volume".into()))?;
        self.made.push(Undo::Volume(v.volume_id.clone()));
        Ok(v)
    }

    /// Attach, stage and publish a volume for a pod; returns the pod's mount path.
    async fn bring_up(&mut self, v: &Volume, pv: &str) -> Result<PathBuf> {
        let id = v.volume_id.clone();
        let req = ControllerPublishVolumeRequest {
            volume_id: id.clone(),
            node_id: NODE.into(),
            volume_capability: Some(capability()),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        };
        let ctx = self
            .controller
            .controller_publish_volume(req)
            .await
            .map_err(status)?
            .into_inner()
            .publish_context;
        self.made.push(Undo::Attach(id.clone()));
        self.step(
            "ControllerPublishVolume",
            "NODE_READY",
            &format!(
                "{id} attached as {}",
                ctx.get("devicePath").map(String::as_str).unwrap_or("?")
            ),
        );

        let staging = self.staging(&id);
        let req = NodeStageVolumeRequest {
            volume_id: id.clone(),
            publish_context: ctx.clone(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(capability()),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        };
        self.node.node_stage_volume(req).await.map_err(status)?;
        self.made.push(Undo::Stage(id.clone(), staging.display().to_string()));
        self.step(
            "NodeStageVolume",
            "VOL_READY",
            &format!("ext4 mounted at …/{}", tail(&staging, 3)),
        );

        let target = self.target(&uuid(), pv);
        let req = NodePublishVolumeRequest {
            volume_id: id.clone(),
            publish_context: ctx,
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(capability()),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        };
        self.node.node_publish_volume(req).await.map_err(status)?;
        self.made.push(Undo::Publish(id.clone(), target.display().to_string()));
        self.step(
            "NodePublishVolume",
            "PUBLISHED",
            &format!("bound into the pod at …/{}", tail(&target, 4)),
        );
        Ok(target)
    }

    async fn run(&mut self) -> Result<()> {
        self.step(
            "StorageClass ebs-sc",
            "",
            "provisioner ebs.csi.aws.com, WaitForFirstConsumer, gp3 (default), ext4",
        );
        self.step("PersistentVolumeClaim", "", "dev-ns/ebs-claim, 10Gi, ReadWriteOnce");
        let pv = format!("pvc-{}", uuid());
        let v = self.create(&pv, 10, None).await?;
        let zone = v
            .accessible_topology
            .first()
            .and_then(|t| t.segments.get("topology.kubernetes.io/zone"))
            .cloned();
        self.step(
            "CreateVolume",
            "CREATED",
            &format!("{} {pv}, 10 GiB gp3 in {}", v.volume_id, zone.unwrap_or_default()),
        );
        let id = v.volume_id.clone();

        let target = self.bring_up(&v, &pv).await?;
        let page = target.join("index.html");
        std::fs::write(&page, PAGE).map_err(|e| Error::internal("cannot write the nginx page", e))?;
        let back = std::fs::read_to_string(&page).map_err(|e| Error::internal("cannot read the page back", e))?;
        if back != PAGE {
            return Err(Error::Internal(
                "the page read back differs from the one written".into(),
            ));
        }
        self.step(
            "write index.html",
            "PUBLISHED",
            &format!("{} bytes written and read back", back.len()),
        );

        let stats = self.stats(&id, &target).await?;
        self.step("NodeGetVolumeStats", "PUBLISHED", &stats);

        let req = ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 20 << 30,
                limit_bytes: 0,
            }),
            volume_capability: Some(capability()),
            ..Default::default()
        };
        let r = self
            .controller
            .controller_expand_volume(req)
            .await
            .map_err(status)?
            .into_inner();
        let req = NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.display().to_string(),
            capacity_range: Some(CapacityRange {
                required_bytes: r.capacity_bytes,
                limit_bytes: 0,
            }),
            volume_capability: Some(capability()),
            ..Default::default()
        };
        let target = match self.node.node_expand_volume(req).await {
            Ok(_) => {
                let stats = self.stats(&id, &target).await?;
                self.step(
                    "Expand to 20Gi",
                    "PUBLISHED",
                    &format!("online, controller then node; {stats}"),
                );
                target
            }
            // Growing a mounted ext4 needs CAP_SYS_RESOURCE (a privileged node pod has it). Without
            // it, do what kubelet does for offline expansion: the pod goes, the volume is staged
            // again, and staging grows the filesystem.
            Err(e) if e.message().contains("CAP_SYS_RESOURCE") => {
                self.step(
                    "NodeExpandVolume",
                    "PUBLISHED",
                    "online ext4 growth needs CAP_SYS_RESOURCE, which this host lacks; expanding offline",
                );
                self.take_down().await?;
                let target = self.bring_up(&v, &pv).await?;
                let stats = self.stats(&id, &target).await?;
                self.step(
                    "Expand to 20Gi",
                    "PUBLISHED",
                    &format!("offline, grown at stage; {stats}"),
                );
                target
            }
            Err(e) => return Err(status(e)),
        };
        let back = std::fs::read_to_string(target.join("index.html")).unwrap_or_default();
        if back != PAGE {
            return Err(Error::Internal("the page is gone after the expansion".into()));
        }

        let req = CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: format!("snapshot-{}", uuid()),
            ..Default::default()
        };
        let s = self
            .controller
            .create_snapshot(req)
            .await
            .map_err(status)?
            .into_inner()
            .snapshot;
        let s = s.ok_or_else(|| Error::Internal("CreateSnapshot returned no snapshot".into()))?;
        self.made.push(Undo::Snapshot(s.snapshot_id.clone()));
        self.step(
            "CreateSnapshot",
            "",
            &format!("{} of {id}, ready: {}", s.snapshot_id, s.ready_to_use),
        );

        let pv2 = format!("pvc-{}", uuid());
        let source = VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: s.snapshot_id.clone(),
                },
            )),
        };
        let restored = self.create(&pv2, 20, Some(source)).await?;
        self.step(
            "CreateVolume (restore)",
            "CREATED",
            &format!("{} from {}", restored.volume_id, s.snapshot_id),
        );
        let target2 = self.bring_up(&restored, &pv2).await?;
        let back = std::fs::read_to_string(target2.join("index.html")).unwrap_or_default();
        if back != PAGE {
            return Err(Error::Internal("the restored volume does not hold the page".into()));
        }
        self.step("read index.html (restore)", "PUBLISHED", "the page is there");
        Ok(())
    }

    async fn stats(&mut self, id: &str, target: &Path) -> Result<String> {
        let req = NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        };
        let usage = self
            .node
            .node_get_volume_stats(req)
            .await
            .map_err(status)?
            .into_inner()
            .usage;
        let bytes = usage.iter().find(|u| u.unit == volume_usage::Unit::Bytes as i32);
        Ok(match bytes {
            Some(u) => format!(
                "{:.1} GiB total, {:.1} MiB used",
                u.total as f64 / (1u64 << 30) as f64,
                u.used as f64 / (1u64 << 20) as f64
            ),
            None => "no byte usage reported".into(),
        })
    }

    /// Unmakes one thing and prints the step.
    async fn undo(&mut self, undo: Undo) -> Result<()> {
        let (what, state, id, result) = match undo {
            Undo::Publish(id, target) => {
                let r = self
                    .node
                    .node_unpublish_volume(NodeUnpublishVolumeRequest {
                        volume_id: id.clone(),
                        target_path: target,
                    })
                    .await;
                ("NodeUnpublishVolume", "VOL_READY", id, r.map(drop))
            }
            Undo::Stage(id, staging) => {
                let req = NodeUnstageVolumeRequest {
                    volume_id: id.clone(),
                    staging_target_path: staging,
                };
                let r = self.node.node_unstage_volume(req).await;
                ("NodeUnstageVolume", "NODE_READY", id, r.map(drop))
            }
            Undo::Attach(id) => {
                let req = ControllerUnpublishVolumeRequest {
                    volume_id: id.clone(),
                    node_id: NODE.into(),
                    ..Default::default()
                };
                let r = self.controller.controller_unpublish_volume(req).await;
                ("ControllerUnpublishVolume", "CREATED", id, r.map(drop))
            }
            Undo::Snapshot(id) => {
                let req = DeleteSnapshotRequest {
                    snapshot_id: id.clone(),
                    ..Default::default()
                };
                let r = self.controller.delete_snapshot(req).await;
                ("DeleteSnapshot", "", id, r.map(drop))
            }
            Undo::Volume(id) => {
                let req = DeleteVolumeRequest {
                    volume_id: id.clone(),
                    ..Default::default()
                };
                let r = self.controller.delete_volume(req).await;
                ("DeleteVolume", "deleted", id, r.map(drop))
            }
        };
        match result {
            Ok(()) => {
                self.step(what, state, &id);
                Ok(())
            }
            Err(e) => {
                self.step(what, "FAILED", &format!("{id}: {:?}: {}", e.code(), e.message()));
                Err(status(e))
            }
        }
    }

    /// Takes the pod and the staging mount of the newest volume down (kubelet's offline path).
    async fn take_down(&mut self) -> Result<()> {
        while let Some(Undo::Publish(..) | Undo::Stage(..)) = self.made.last() {
            if let Some(u) = self.made.pop() {
                self.undo(u).await?;
            }
        }
        Ok(())
    }

    /// Unmakes everything, newest first; keeps going past failures and reports them.
    async fn teardown(&mut self) -> bool {
        let mut clean = true;
        while let Some(undo) = self.made.pop() {
            clean &= self.undo(undo).await.is_ok();
        }
        clean
    }
}

fn tail(path: &Path, n: usize) -> String {
    let parts: Vec<_> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

/// Why the demo cannot run here, in one sentence, or None.
fn precondition() -> Option<String> {
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

fn start_driver(dir: &Path) -> Result<Child> {
    let exe = std::env::current_exe().map_err(|e| Error::internal("cannot find this binary", e))?;
    let log = std::fs::File::create(dir.join("driver.log"))
        .map_err(|e| Error::internal("cannot create the driver log", e))?;
    Command::new(exe)
        .args(["serve", "--mode", "all", "--node-id", NODE, "--zone", ZONE])
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

async fn connect(dir: &Path, child: &mut Child) -> Result<Channel> {
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

fn stop_driver(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

/// Runs the demo; the exit code says whether every step worked (2: cannot run here).
pub async fn run(keep: bool) -> i32 {
    if let Some(why) = precondition() {
        eprintln!("{why}");
        return 2;
    }
    let dir = std::env::temp_dir().join(format!("ebs-csi-demo-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return 1;
    }
    let mut child = match start_driver(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let code = match connect(&dir, &mut child).await {
        Err(e) => {
            eprintln!("{e}");
            1
        }
        Ok(channel) => {
            let mut demo = Demo {
                controller: ControllerClient::new(channel.clone()),
                node: NodeClient::new(channel),
                root: dir.join("root"),
                made: Vec::new(),
                started: Instant::now(),
            };
            println!(
                "ebs-csi demo: the seed's life cycle on the local backend (data in {})",
                dir.display()
            );
            let outcome = tokio::select! {
                r = demo.run() => r,
                _ = tokio::signal::ctrl_c() => Err(Error::Aborted("interrupted".into())),
            };
            if let Err(e) = &outcome {
                eprintln!("demo failed: {e}");
            }
            if keep && outcome.is_ok() {
                println!(
                    "--keep: the volumes stay published under {}; the driver keeps running (pid {}).",
                    dir.display(),
                    child.id()
                );
                println!(
                    "clean up: kill {} and unmount/detach what is under {}",
                    child.id(),
                    dir.display()
                );
                return 0;
            }
            let clean = demo.teardown().await;
            match (outcome.is_ok(), clean) {
                (true, true) => {
                    println!(
                        "{:>7.2}s  all steps worked; nothing left mounted or attached",
                        demo.started.elapsed().as_secs_f64()
                    );
                    0
                }
                _ => 1,
            }
        }
    };
    stop_driver(&mut child);
    let _ = std::fs::remove_dir_all(&dir);
    code
}
