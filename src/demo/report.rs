//! What the user sees. The player tells what happened as [`Event`]s; this file alone decides how
//! each reads: one line per step, `elapsed  name  state  facts`, the state a volume's life-cycle
//! state (CREATED, NODE_READY, VOL_READY, PUBLISHED) where the step changes or shows it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use crate::progress::Progress;

use crate::ebs::VolumeType;
use crate::manifest::Listed;

/// A volume's life-cycle state, as the state column shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// No volume (yet), or a step that is not about one.
    None,
    Created,
    NodeReady,
    VolReady,
    Published,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::None => "",
            Stage::Created => "CREATED",
            Stage::NodeReady => "NODE_READY",
            Stage::VolReady => "VOL_READY",
            Stage::Published => "PUBLISHED",
        }
    }
}

/// What NodeGetVolumeStats said of a volume's bytes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Usage {
    Bytes {
        total: i64,
        used: i64,
        available: i64,
    },
    /// No byte usage in the answer.
    Unknown,
}

/// A call that unmakes something, newest first at the end or when a deletion sets it off.
#[derive(Clone, Copy, Debug)]
pub(super) enum Unmake {
    NodeUnpublish,
    NodeUnstage,
    ControllerUnpublish,
    DeleteSnapshot,
    DeleteVolume,
}

impl Unmake {
    /// The call's name, and the state the volume is in after it.
    fn shown(self) -> (&'static str, &'static str) {
        match self {
            Unmake::NodeUnpublish => ("NodeUnpublishVolume", "VOL_READY"),
            Unmake::NodeUnstage => ("NodeUnstageVolume", "NODE_READY"),
            Unmake::ControllerUnpublish => ("ControllerUnpublishVolume", "CREATED"),
            Unmake::DeleteSnapshot => ("DeleteSnapshot", ""),
            Unmake::DeleteVolume => ("DeleteVolume", "deleted"),
        }
    }
}

/// One step of the demo, as the player tells it.
pub(super) enum Event<'a> {
    /// A `-f` or `--delete` run begins (shown when there is more than one).
    Run {
        delete: bool,
        given: &'a [String],
    },
    /// One line of what a run read.
    Listed(&'a Listed),
    /// Why the region has its zones and the node its zone.
    Zones(&'a str),
    /// What the registrar learns from NodeGetInfo.
    NodeInfo {
        node: &'a str,
        zone: &'a str,
        max_volumes: i64,
    },
    Created {
        volume_id: &'a str,
        pv: &'a str,
        gib: i64,
        volume_type: VolumeType,
        zone: &'a str,
    },
    Restored {
        volume_id: &'a str,
        from: &'a str,
    },
    Cloned {
        volume_id: &'a str,
        from: &'a str,
    },
    Attached {
        volume_id: &'a str,
        device: &'a str,
    },
    Staged {
        block: bool,
        fs_type: &'a str,
        staging: &'a Path,
    },
    Published {
        block: bool,
        target: &'a Path,
        read_only: bool,
    },
    /// A pod found the page on a volume; `object` is index.html or the device's path, `made` how
    /// the volume was made (`restore`, `clone`) when from a source.
    PageRead {
        object: &'a str,
        made: Option<&'a str>,
    },
    PageWritten {
        object: &'a str,
        block: bool,
        bytes: usize,
    },
    Stats(Usage),
    /// ControllerExpandVolume done; no pod has the volume, so the filesystem grows at next stage.
    ExpandedLater {
        size: &'a str,
        stage: Stage,
        volume_id: &'a str,
        gib: i64,
    },
    ExpandedControllerOnly {
        size: &'a str,
        usage: Usage,
    },
    ExpandedOnline {
        size: &'a str,
        usage: Usage,
    },
    /// NodeExpandVolume could not grow a mounted ext4: kubelet's offline path follows.
    OfflineExpansion,
    ExpandedOffline {
        size: &'a str,
        usage: Usage,
    },
    Modified {
        stage: Stage,
        volume_id: &'a str,
        class: &'a str,
        parameters: &'a HashMap<String, String>,
    },
    SnapshotTaken {
        snapshot_id: &'a str,
        source: &'a str,
        ready: bool,
    },
    /// A claim that waits for a first consumer, which never came in its apply.
    Pending {
        claim: &'a str,
    },
    Unmade {
        call: Unmake,
        id: &'a str,
    },
    UnmakeFailed {
        call: Unmake,
        id: &'a str,
        status: &'a tonic::Status,
    },
    /// A deleted claim's volume, kept by reclaim policy Retain.
    Released {
        pv: &'a str,
        volume_id: &'a str,
    },
    /// A deleted VolumeSnapshot's snapshot, kept by deletion policy Retain.
    SnapshotKept {
        snapshot_id: &'a str,
    },
    ExistingVolume {
        handle: &'a str,
        pv: &'a str,
        gib: u64,
        volume_type: VolumeType,
        zone: &'a str,
    },
    ExistingSnapshot {
        handle: &'a str,
        content: &'a str,
    },
    ScratchSnapshot {
        snapshot_id: &'a str,
        volume_id: &'a str,
        gib: u64,
        ready: bool,
    },
    BoundVolume {
        claim: &'a str,
        pv: &'a str,
        handle: &'a str,
        gib: u64,
        zone: &'a str,
    },
    BoundSnapshot {
        snapshot: &'a str,
        content: &'a str,
        handle: &'a str,
    },
}

/// The terminal: each event as its step line, timed from the start.
pub(super) struct Report {
    started: Instant,
    /// For YAML with many objects, a spinner under the lines counting the steps (on a terminal).
    progress: Option<Progress>,
}

/// Claims, pods and snapshots from which a demo shows progress.
const MANY: usize = 20;

impl Report {
    pub(super) fn new(objects: usize) -> Self {
        Report {
            started: Instant::now(),
            progress: (objects >= MANY).then(|| Progress::steps("demo", "steps")),
        }
    }

    fn line(&self, name: &str, state: &str, facts: &str) {
        let print = || {
            println!(
                "{:>7.2}s  {name:<26} {state:<11} {facts}",
                self.started.elapsed().as_secs_f64()
            )
        };
        match &self.progress {
            Some(p) => {
                p.suspend(print);
                p.step();
                p.say(format!("{name} {facts}"));
            }
            None => print(),
        }
    }

    pub(super) fn show(&self, event: Event<'_>) {
        let published = Stage::Published.label();
        match event {
            Event::Run { delete, given } => {
                let verb = if delete {
                    "kubectl delete -f"
                } else {
                    "kubectl apply -f"
                };
                self.line(verb, "", &given.join(" -f "));
            }
            Event::Listed(l) => self.line(&l.label, "", &l.facts),
            Event::Zones(note) => self.line("Zones", "", note),
            Event::NodeInfo {
                node,
                zone,
                max_volumes,
            } => self.line(
                "NodeGetInfo",
                "",
                &format!("node {node} in {zone}, at most {max_volumes} volumes (the registrar's announcement)"),
            ),
            Event::Created {
                volume_id,
                pv,
                gib,
                volume_type,
                zone,
            } => self.line(
                "CreateVolume",
                Stage::Created.label(),
                &format!("{volume_id} {pv}, {gib} GiB {volume_type} in {zone}"),
            ),
            Event::Restored { volume_id, from } => {
                self.line("CreateVolume (restore)", Stage::Created.label(), &format!("{volume_id} from {from}"))
            }
            Event::Cloned { volume_id, from } => {
                self.line("CreateVolume (clone)", Stage::Created.label(), &format!("{volume_id} from {from}"))
            }
            Event::Attached { volume_id, device } => self.line(
                "ControllerPublishVolume",
                Stage::NodeReady.label(),
                &format!("{volume_id} attached as {device}"),
            ),
            Event::Staged {
                block,
                fs_type,
                staging,
            } => {
                let facts = if block {
                    format!("block device, staging dir …/{}", tail(staging, 2))
                } else {
                    format!("{fs_type} mounted at …/{}", tail(staging, 3))
                };
                self.line("NodeStageVolume", Stage::VolReady.label(), &facts);
            }
            Event::Published {
                block,
                target,
                read_only,
            } => {
                let what = if block { "device" } else { "the pod" };
                let ro = if read_only { " (read-only)" } else { "" };
                self.line(
                    "NodePublishVolume",
                    published,
                    &format!("bound into {what} at …/{}{ro}", tail(target, 4)),
                );
            }
            Event::PageRead { object, made } => {
                let suffix = made.map(|m| format!(" ({m})")).unwrap_or_default();
                self.line(&format!("read {object}{suffix}"), published, "the page is there");
            }
            Event::PageWritten { object, block, bytes } => {
                let on = if block { " on the raw device" } else { "" };
                self.line(
                    &format!("write {object}"),
                    published,
                    &format!("{bytes} bytes written{on} and read back"),
                );
            }
            Event::Stats(usage) => self.line("NodeGetVolumeStats", published, &usage_text(usage)),
            Event::ExpandedLater {
                size,
                stage,
                volume_id,
                gib,
            } => self.line(
                &format!("Expand to {size}"),
                stage.label(),
                &format!("{volume_id} is {gib} GiB; kubelet grows the filesystem when a pod next stages it"),
            ),
            Event::ExpandedControllerOnly { size, usage } => self.line(
                &format!("Expand to {size}"),
                published,
                &format!("controller only (no filesystem to grow); {}", usage_text(usage)),
            ),
            Event::ExpandedOnline { size, usage } => self.line(
                &format!("Expand to {size}"),
                published,
                &format!("online, controller then node; {}", usage_text(usage)),
            ),
            Event::OfflineExpansion => self.line(
                "NodeExpandVolume",
                published,
                "online ext4 growth needs CAP_SYS_RESOURCE, which this host lacks; expanding offline",
            ),
            Event::ExpandedOffline { size, usage } => self.line(
                &format!("Expand to {size}"),
                published,
                &format!("offline, grown at stage; {}", usage_text(usage)),
            ),
            Event::Modified {
                stage,
                volume_id,
                class,
                parameters,
            } => {
                let mut shown: Vec<String> = parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
                shown.sort();
                self.line(
                    "ControllerModifyVolume",
                    stage.label(),
                    &format!("{volume_id} to VolumeAttributesClass {class} ({})", shown.join(", ")),
                );
            }
            Event::SnapshotTaken {
                snapshot_id,
                source,
                ready,
            } => self.line("CreateSnapshot", "", &format!("{snapshot_id} of {source}, ready: {ready}")),
            Event::Pending { claim } => self.line(
                "PersistentVolumeClaim",
                "Pending",
                &format!("{claim}: WaitForFirstConsumer and no pod uses it yet; nothing provisioned"),
            ),
            Event::Unmade { call, id } => {
                let (name, state) = call.shown();
                self.line(name, state, id);
            }
            Event::UnmakeFailed { call, id, status } => {
                let (name, _) = call.shown();
                self.line(
                    name,
                    "FAILED",
                    &format!("{id}: {:?}: {}", status.code(), status.message()),
                );
            }
            Event::Released { pv, volume_id } => self.line(
                "PersistentVolume",
                "Released",
                &format!(
                    "{}: reclaim policy Retain: {volume_id} stays (the demo deletes it when it ends)",
                    short(pv)
                ),
            ),
            Event::SnapshotKept { snapshot_id } => self.line(
                "VolumeSnapshotContent",
                "",
                &format!("deletion policy Retain: {snapshot_id} stays (the demo deletes it when it ends)"),
            ),
            Event::ExistingVolume {
                handle,
                pv,
                gib,
                volume_type,
                zone,
            } => self.line(
                "existing volume",
                Stage::Created.label(),
                &format!(
                    "{handle} of PersistentVolume {pv}: {gib} GiB {volume_type} in {zone}, made blank by the demo (on AWS it exists already)"
                ),
            ),
            Event::ExistingSnapshot { handle, content } => self.line(
                "existing snapshot",
                "",
                &format!(
                    "{handle} of VolumeSnapshotContent {content}: the demo writes its page on a scratch volume and snapshots it \
                     under that id (on AWS it exists already)"
                ),
            ),
            Event::ScratchSnapshot {
                snapshot_id,
                volume_id,
                gib,
                ready,
            } => self.line(
                "snapshot of scratch",
                "",
                &format!("{snapshot_id} of {volume_id}, {gib} GiB, ready: {ready}"),
            ),
            Event::BoundVolume {
                claim,
                pv,
                handle,
                gib,
                zone,
            } => self.line(
                "PersistentVolumeClaim",
                Stage::Created.label(),
                &format!("{claim} bound to PersistentVolume {pv}: {handle}, {gib} GiB in {zone}"),
            ),
            Event::BoundSnapshot {
                snapshot,
                content,
                handle,
            } => self.line(
                "VolumeSnapshot",
                "",
                &format!("{snapshot} bound to VolumeSnapshotContent {content} ({handle}), ready: true"),
            ),
        }
    }

    /// The first line: what the demo plays, and where its data is.
    pub(super) fn begin(what: &str, dir: &Path) {
        println!("ebs-csi demo: {what} on the local backend (data in {})", dir.display());
    }

    /// `--keep`: what stays, and how to clean it up.
    pub(super) fn kept(dir: &Path, pid: u32) {
        println!(
            "--keep: the volumes stay published under {}; the driver keeps running (pid {pid}).",
            dir.display()
        );
        println!(
            "clean up: kill {pid} and unmount/detach what is under {}",
            dir.display()
        );
    }

    /// The last line of a demo that worked and cleaned up.
    pub(super) fn all_worked(&self) {
        let print = || {
            println!(
                "{:>7.2}s  all steps worked; nothing left mounted or attached",
                self.started.elapsed().as_secs_f64()
            )
        };
        match &self.progress {
            Some(p) => p.suspend(print),
            None => print(),
        }
    }
}

fn usage_text(usage: Usage) -> String {
    match usage {
        Usage::Bytes {
            total,
            used: 0,
            available: 0,
        } => format!("{} device", gib_text(total as u64)),
        Usage::Bytes { total, used, .. } => format!(
            "{:.1} GiB total, {:.1} MiB used",
            total as f64 / (1u64 << 30) as f64,
            used as f64 / (1u64 << 20) as f64
        ),
        Usage::Unknown => "no byte usage reported".into(),
    }
}

fn gib_text(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The last `n` components of a path, for the step column.
fn tail(path: &Path, n: usize) -> String {
    let parts: Vec<_> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

/// A PersistentVolume's name, shortened for the step column (`pvc-<uid>` to `pvc-<first 8>…`).
fn short(pv: &str) -> String {
    match pv.strip_prefix("pvc-") {
        Some(uid) if uid.len() > 8 && uid.is_char_boundary(8) => format!("pvc-{}…", &uid[..8]),
        _ => pv.to_owned(),
    }
}
