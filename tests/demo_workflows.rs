//! The workflows users follow with an EBS driver, each an example played by `ebs-csi demo` as
//! root on loop devices, leaving nothing behind: applies and deletes in command-line order,
//! generic ephemeral volumes, static provisioning, snapshot import, and zones from the YAML. What
//! they cannot do is refused: tests/demo_workflow_refusals.rs.

mod demo_run;
mod support;

use demo_run::{Run, play, step};

/// Where `needle` first is in `text`, or a failure showing the output.
fn at(run: &Run, text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{:?}: no {needle:?} in:\n{}", run.args, run.stdout()))
}

/// The volume id on the first line that contains `needle`.
fn volume_on(run: &Run, needle: &str) -> String {
    let out = run.stdout();
    let line = out
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{:?}: no line with {needle:?} in:\n{out}", run.args));
    line.split_whitespace()
        .find(|w| w.starts_with("vol-"))
        .unwrap_or_else(|| panic!("no volume id on {line:?}"))
        .trim_end_matches(',')
        .to_owned()
}

const APPLY: &str = "kubectl apply -f";
const DELETE: &str = "kubectl delete -f";

#[test]
fn apply_and_delete_play_in_command_line_order() {
    let run = play(
        &[
            "-f",
            "examples/delete-and-restore/1-app",
            "--delete",
            "examples/delete-and-restore/1-app/3-pod.yaml",
            "--delete",
            "examples/delete-and-restore/1-app/2-pvc.yaml",
            "-f",
            "examples/delete-and-restore/2-restore",
        ],
        &[
            step(APPLY, "", "examples/delete-and-restore/1-app"),
            step(
                DELETE,
                "",
                "examples/delete-and-restore/1-app/3-pod.yaml -f examples/delete-and-restore/1-app/2-pvc.yaml",
            ),
            step("Pod", "", "default/app: deleted; 1 pod goes"),
            step(
                "PersistentVolumeClaim",
                "",
                "default/data: deleted; reclaim policy Delete: its volume is deleted",
            ),
            step(APPLY, "", "examples/delete-and-restore/2-restore"),
            step("Pod", "", "default/app, 1 pod, data-restored at /usr/share/nginx/html"),
            step("read index.html (restore)", "PUBLISHED", "the page is there"),
        ],
    );
    // The first app's volume goes, step by step, before the second apply starts.
    let data = volume_on(&run, &step("CreateVolume", "CREATED", ""));
    let out = run.after(DELETE);
    let next_apply = at(&run, &out, APPLY);
    let mut last = 0;
    for name in [
        "NodeUnpublishVolume",
        "NodeUnstageVolume",
        "ControllerUnpublishVolume",
        "DeleteVolume",
    ] {
        let here = at(&run, &out, &format!("{name:<26} "));
        let line = out[here..].lines().next().unwrap_or_default();
        assert!(
            line.contains(&data) && here > last && here < next_apply,
            "{name} of {data} should come, in order, between the delete and the next apply:\n{out}"
        );
        last = here;
    }
}

#[test]
fn a_claim_in_use_waits_for_its_pod_and_a_same_named_pod_is_applied_anew() {
    let run = play(
        &[
            "-f",
            "examples/delete-and-restore/1-app",
            "--delete",
            "examples/delete-and-restore/1-app/2-pvc.yaml",
            "-f",
            "examples/delete-and-restore/1-app/1-storageclass.yaml",
            "--delete",
            "examples/delete-and-restore/1-app/3-pod.yaml",
            "-f",
            "examples/delete-and-restore/2-restore",
        ],
        &[
            step(
                "PersistentVolumeClaim",
                "",
                "default/data: Terminating while pods use it; it goes when they are deleted",
            ),
            step("StorageClass ebs-app", "", "unchanged"),
            step("VolumeSnapshotClass", "", "ebs-app-snapshots: unchanged"),
            step("read index.html (restore)", "PUBLISHED", "the page is there"),
        ],
    );
    let data = volume_on(&run, &step("CreateVolume", "CREATED", ""));
    let out = run.after(&step(DELETE, "", "examples/delete-and-restore/1-app/2-pvc.yaml"));
    let pod_deleted = at(&run, &out, "default/app: deleted");
    let gone = at(&run, &out, &step("DeleteVolume", "deleted", &data));
    assert!(
        !out[..pod_deleted].contains("NodeUnpublishVolume") && gone > pod_deleted,
        "the claim's volume stays while the pod runs, and goes with the pod:\n{out}"
    );
}

#[test]
fn ephemeral_volumes_are_made_with_their_pod_and_deleted_with_it() {
    let run = play(
        &[
            "-f",
            "examples/ephemeral",
            "--delete",
            "examples/ephemeral/pod.yaml",
            "-f",
            "examples/ephemeral/pod.yaml",
        ],
        &[
            step(
                "PersistentVolumeClaim",
                "",
                "default/cache-scratch, 2Gi, ReadWriteOnce, ephemeral: Pod default/cache's, deleted with it",
            ),
            step("Deployment", "", "default/workers, 2 pods, ephemeral work at /work"),
            step("Pod", "", "default/cache, 1 pod, ephemeral scratch at /cache"),
            step(
                "PersistentVolumeClaim",
                "",
                "default/cache-scratch: deleted; reclaim policy Delete: its volume is deleted",
            ),
        ],
    );
    let out = run.stdout();
    let workers = out
        .lines()
        .filter(|l| l.contains("default/workers-") && l.contains("-work, 1Gi"))
        .count();
    assert_eq!(
        workers, 2,
        "each replica has its own claim, named after its pod:\n{out}"
    );
    // The pod's claim is provisioned with it, deleted with it, and made anew when it comes back.
    let first = volume_on(&run, ", 2 GiB gp3");
    let again = step(APPLY, "", "examples/ephemeral/pod.yaml");
    let second = run
        .after(&again)
        .lines()
        .find(|l| l.contains(", 2 GiB gp3"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("vol-")).map(str::to_owned))
        .unwrap_or_else(|| panic!("the pod applied again gets no new volume:\n{out}"));
    assert_ne!(first, second, "a new claim, a new volume");
    let deleted = at(&run, &out, &step("DeleteVolume", "deleted", &first));
    assert!(
        deleted < at(&run, &out, &again),
        "the first claim's volume goes with the pod:\n{out}"
    );
}

#[test]
fn static_provisioning_binds_the_named_volume_in_its_zone() {
    let run = play(
        &[
            "-f",
            "examples/static",
            "--delete",
            "examples/static/pod.yaml",
            "--delete",
            "examples/static/pvc.yaml",
        ],
        &[
            step(
                "PersistentVolume",
                "",
                "imported-data: vol-0a1b2c3d4e5f60718, 20Gi, ReadWriteOnce, reclaim policy Retain, node affinity: zone In us-east-2c",
            ),
            step(
                "Zones",
                "",
                "us-east-2c (named in the YAML); node demo-node in us-east-2c",
            ),
            step("NodeGetInfo", "", "node demo-node in us-east-2c"),
            step(
                "existing volume",
                "CREATED",
                "vol-0a1b2c3d4e5f60718 of PersistentVolume imported-data: 20 GiB gp3 in us-east-2c, made blank by the demo",
            ),
            step(
                "PersistentVolumeClaim",
                "CREATED",
                "default/imported-data bound to PersistentVolume imported-data: vol-0a1b2c3d4e5f60718",
            ),
            step(
                "ControllerPublishVolume",
                "NODE_READY",
                "vol-0a1b2c3d4e5f60718 attached as /dev/loop",
            ),
            "bound into the pod at …/volumes/kubernetes.io~csi/imported-data/mount".into(),
            step("write index.html", "PUBLISHED", "47 bytes written and read back"),
            step(
                "PersistentVolume",
                "Released",
                "imported-data: reclaim policy Retain: vol-0a1b2c3d4e5f60718 stays",
            ),
            step("DeleteVolume", "deleted", "vol-0a1b2c3d4e5f60718"),
        ],
    );
    let out = run.stdout();
    assert!(!out.contains("CreateVolume"), "nothing is provisioned:\n{out}");
    let deletes = run.after(DELETE);
    assert!(
        at(&run, &deletes, "DeleteVolume") > at(&run, &deletes, "Released"),
        "Retain keeps the volume; only the demo's own teardown removes it:\n{out}"
    );
}

/// The example's files in a temp dir, `edit` applied to one of them.
fn edited(example: &str, file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(demo_run::repo().join(example)).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let name = p.file_name().unwrap().to_owned();
        let text = if name == file { edit(text) } else { text };
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn a_static_volume_with_reclaim_policy_delete_goes_with_its_claim() {
    let dir = edited("examples/static", "pv.yaml", |t| {
        t.replace(
            "persistentVolumeReclaimPolicy: Retain",
            "persistentVolumeReclaimPolicy: Delete",
        )
    });
    let d = dir.path().display().to_string();
    let (pod, pvc) = (format!("{d}/pod.yaml"), format!("{d}/pvc.yaml"));
    let run = play(
        &["-f", &d, "--delete", &pod, "--delete", &pvc],
        &[step(
            "PersistentVolumeClaim",
            "",
            "default/imported-data: deleted; reclaim policy Delete: its volume is deleted",
        )],
    );
    let deletes = run.after(DELETE);
    let gone = at(
        &run,
        &deletes,
        &step("DeleteVolume", "deleted", "vol-0a1b2c3d4e5f60718"),
    );
    assert!(
        gone < at(&run, &deletes, "all steps worked") && !deletes[gone..].contains("Released"),
        "the provisioner deletes it when the claim goes:\n{deletes}"
    );
}

#[test]
fn an_imported_snapshot_is_restored_and_kept_by_its_deletion_policy() {
    let run = play(
        &[
            "-f",
            "examples/snapshot-import",
            "--delete",
            "examples/snapshot-import/3-volumesnapshot.yaml",
        ],
        &[
            step(
                "VolumeSnapshotContent",
                "",
                "imported-snapshot-content: snap-0c1d2e3f4a5b60718, for VolumeSnapshot default/imported-snapshot, deletion policy Retain",
            ),
            step(
                "existing snapshot",
                "",
                "snap-0c1d2e3f4a5b60718 of VolumeSnapshotContent imported-snapshot-content",
            ),
            "scratch-snap-0c1d2e3f4a5b60718, 4 GiB gp3".into(),
            step("snapshot of scratch", "", "snap-0c1d2e3f4a5b60718 of vol-"),
            step(
                "VolumeSnapshot",
                "",
                "default/imported-snapshot bound to VolumeSnapshotContent imported-snapshot-content (snap-0c1d2e3f4a5b60718), ready: true",
            ),
            "from snap-0c1d2e3f4a5b60718".into(),
            step("read index.html (restore)", "PUBLISHED", "the page is there"),
            "deletion policy Retain: snap-0c1d2e3f4a5b60718 stays".into(),
            step("DeleteSnapshot", "", "snap-0c1d2e3f4a5b60718"),
        ],
    );
    let out = run.stdout();
    assert!(
        !out.contains("CreateSnapshot"),
        "the snapshotter takes no snapshot:\n{out}"
    );
    let scratch = volume_on(&run, "scratch-snap-0c1d2e3f4a5b60718");
    let scratch_gone = at(&run, &out, &step("DeleteVolume", "deleted", &scratch));
    assert!(
        scratch_gone < at(&run, &out, "CreateVolume (restore)"),
        "the scratch volume is gone before anything is restored:\n{out}"
    );
    let deletes = run.after(DELETE);
    assert!(
        at(&run, &deletes, "DeleteSnapshot") > at(&run, &deletes, "stays"),
        "Retain keeps the snapshot; only the demo's own teardown removes it:\n{out}"
    );
}

#[test]
fn an_imported_snapshot_with_deletion_policy_delete_goes_with_its_volumesnapshot() {
    let dir = edited("examples/snapshot-import", "2-snapshotcontent.yaml", |t| {
        t.replace("deletionPolicy: Retain", "deletionPolicy: Delete")
    });
    let d = dir.path().display().to_string();
    let snapshot = format!("{d}/3-volumesnapshot.yaml");
    let run = play(
        &["-f", &d, "--delete", &snapshot],
        &[step(
            "VolumeSnapshot",
            "",
            "default/imported-snapshot: deleted; deletion policy Delete: its snapshot is deleted",
        )],
    );
    let deletes = run.after(DELETE);
    let gone = at(&run, &deletes, &step("DeleteSnapshot", "", "snap-0c1d2e3f4a5b60718"));
    assert!(
        gone < at(&run, &deletes, "NodeUnpublishVolume"),
        "the snapshotter deletes it when the VolumeSnapshot goes, before the teardown:\n{deletes}"
    );
}

#[test]
fn zones_named_in_the_yaml_make_the_region_and_place_the_node() {
    play(
        &["-f", "examples/zones"],
        &[
            "provisioner ebs.csi.aws.com, WaitForFirstConsumer, gp3, ext4, allowedTopologies us-east-2b, us-east-2c"
                .into(),
            step(
                "Zones",
                "",
                "us-east-2b, us-east-2c (named in the YAML); node demo-node in us-east-2c (the first that every constraint allows)",
            ),
            step("NodeGetInfo", "", "node demo-node in us-east-2c"),
            "10 GiB gp3 in us-east-2c".to_owned(),
        ],
    );
    play(
        &[
            "-f",
            "examples/zones",
            "--zones",
            "us-east-2a,us-east-2b,us-east-2c",
            "--node-zone",
            "us-east-2c",
        ],
        &[
            step(
                "Zones",
                "",
                "us-east-2a, us-east-2b, us-east-2c (--zones); node demo-node in us-east-2c (--node-zone)",
            ),
            "10 GiB gp3 in us-east-2c".to_owned(),
        ],
    );
}

#[test]
fn a_run_kept_published_is_cleaned_up_by_the_harness() {
    // --keep leaves the volumes published and the driver running; the harness must still leave
    // the host clean, as it does for a run that fails half-way.
    let run = demo_run::demo(&["--keep", "-f", "examples/static"]);
    let out = run.stdout();
    assert!(run.out.status.success(), "{out}\n{}", run.stderr());
    assert!(out.contains("--keep: the volumes stay published"), "{out}");
    assert!(!run.left_behind().is_empty(), "--keep left nothing published:\n{out}");
    let pid: i32 = out
        .split("driver keeps running (pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no driver pid in:\n{out}"));
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    while std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| !s.contains("State:\tZ"))
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dir = std::env::temp_dir().join(format!("ebs-csi-demo-{}", run.pid));
    drop(run);
    assert!(
        support::mounts_under(&dir).is_empty() && support::loops_under(&dir).is_empty() && !dir.exists(),
        "the harness left {} behind",
        dir.display()
    );
}
