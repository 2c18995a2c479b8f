//! What the demo's workflows (tests/demo_workflows.rs) cannot do, refused before anything exists
//! with exit status 1 and one line naming the file, the object and the field: claims no
//! PersistentVolume satisfies, handles that are not EBS ids, snapshots and contents that do not
//! name each other, ephemeral templates the provisioner would refuse, zone constraints no zone
//! meets, deletes of what is not there, objects applied again with changes.

mod demo_run;
mod support;

use demo_run::refused;

const CLASS: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: gp3\n  annotations:\n    storageclass.kubernetes.io/is-default-class: \"true\"\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: WaitForFirstConsumer\n";

fn pv(extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv\nspec:\n  capacity:\n    storage: 5Gi\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  csi:\n    driver: ebs.csi.aws.com\n    volumeHandle: vol-0123456789abcdef0\n{extra}"
    )
}

fn static_claim(size: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: c\nspec:\n  volumeName: pv\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: {size}\n{extra}"
    )
}

const SNAPSHOT: &str = "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata:\n  name: s\nspec:\n  source:\n    volumeSnapshotContentName: content\n";

fn content(snapshot: &str) -> String {
    format!(
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotContent\nmetadata:\n  name: content\nspec:\n  deletionPolicy: Retain\n  driver: ebs.csi.aws.com\n  source:\n    snapshotHandle: snap-0123456789abcdef0\n  volumeSnapshotRef:\n    name: {snapshot}\n    namespace: default\n"
    )
}

fn ephemeral_pod(template: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      image: busybox\n      volumeMounts:\n        - name: v\n          mountPath: /v\n  volumes:\n    - name: v\n      ephemeral:\n        volumeClaimTemplate:\n{template}"
    )
}

/// A claim made at once, a VolumeSnapshotClass with `params`, and a snapshot of the claim.
fn snapshot_with(params: &str) -> String {
    format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: now\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: Immediate\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: src\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: now\n  resources:\n    requests:\n      storage: 1Gi\n---\napiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata:\n  name: locked\ndriver: ebs.csi.aws.com\ndeletionPolicy: Delete\nparameters:\n{params}---\napiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata:\n  name: snap\nspec:\n  volumeSnapshotClassName: locked\n  source:\n    persistentVolumeClaimName: src\n"
    )
}

fn zonal_pod(zone: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: d\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  nodeSelector:\n    topology.kubernetes.io/zone: {zone}\n  containers:\n    - name: c\n      image: busybox\n      volumeMounts:\n        - name: v\n          mountPath: /v\n  volumes:\n    - name: v\n      persistentVolumeClaim:\n        claimName: d\n"
    )
}

struct Case {
    what: &'static str,
    /// Files in the directory given with `-f`.
    files: Vec<(&'static str, String)>,
    /// Files outside it, that only `extra` names.
    loose: Vec<(&'static str, String)>,
    /// Arguments after `-f DIR`; a file name stands for the loose file, else the directory's.
    extra: Vec<&'static str>,
    /// What the one error line says.
    says: Vec<&'static str>,
}

fn case(what: &'static str, files: Vec<(&'static str, String)>, says: Vec<&'static str>) -> Case {
    Case {
        what,
        files,
        loose: vec![],
        extra: vec![],
        says,
    }
}

fn cases() -> Vec<Case> {
    let zoned_class = format!(
        "{CLASS}allowedTopologies:\n  - matchLabelExpressions:\n      - key: topology.kubernetes.io/zone\n        values: [us-east-2a]\n"
    );
    let no_class = "  storageClassName: \"\"\n";
    vec![
        case(
            "a VolumeSnapshotClass lock without a duration or an expiration date",
            vec![("s.yaml", snapshot_with("  lockMode: governance\n"))],
            vec!["s.yaml", "VolumeSnapshotClass locked", "parameters", "lockDuration"],
        ),
        case(
            "a VolumeSnapshotClass naming an Outpost, which the local backend lacks",
            vec![(
                "s.yaml",
                snapshot_with("  outpostArn: arn:aws:outposts:us-east-1:111122223333:outpost/op-0123456789abcdef0\n"),
            )],
            vec![
                "s.yaml",
                "VolumeSnapshotClass locked",
                "parameters.outpostArn",
                "no Outposts",
            ],
        ),
        case(
            "a claim naming a PersistentVolume that does not exist",
            vec![("pvc.yaml", static_claim("1Gi", no_class))],
            vec![
                "pvc.yaml",
                "PersistentVolumeClaim default/c",
                "spec.volumeName",
                "\"pv\"",
            ],
        ),
        case(
            "a claim without storageClassName, given the default class, for a class-less PersistentVolume",
            vec![
                ("0.yaml", CLASS.into()),
                ("pv.yaml", pv("")),
                ("pvc.yaml", static_claim("1Gi", "")),
            ],
            vec![
                "pvc.yaml",
                "PersistentVolumeClaim default/c",
                "spec.storageClassName",
                "set storageClassName: \"\"",
            ],
        ),
        case(
            "a claim larger than its PersistentVolume",
            vec![("pv.yaml", pv("")), ("pvc.yaml", static_claim("8Gi", no_class))],
            vec![
                "pvc.yaml",
                "PersistentVolumeClaim default/c",
                "spec.resources.requests.storage",
                "5Gi",
            ],
        ),
        case(
            "a claim asking for an access mode its PersistentVolume lacks",
            vec![
                ("pv.yaml", pv("")),
                (
                    "pvc.yaml",
                    static_claim("1Gi", no_class).replace("[ReadWriteOnce]", "[ReadWriteOncePod]"),
                ),
            ],
            vec![
                "pvc.yaml",
                "PersistentVolumeClaim default/c",
                "spec.accessModes",
                "ReadWriteOncePod",
            ],
        ),
        case(
            "a volume handle the demo cannot make",
            vec![("pv.yaml", pv("").replace("vol-0123456789abcdef0", "vol-1234abcd"))],
            vec![
                "pv.yaml",
                "PersistentVolume pv",
                "spec.csi.volumeHandle",
                "17 hex digits",
            ],
        ),
        Case {
            extra: vec!["--delete", "pvc.yaml", "-f", "pvc.yaml"],
            ..case(
                "a Released PersistentVolume claimed again",
                vec![("pv.yaml", pv("")), ("pvc.yaml", static_claim("1Gi", no_class))],
                vec![
                    "pvc.yaml",
                    "PersistentVolumeClaim default/c",
                    "spec.volumeName",
                    "Released",
                ],
            )
        },
        case(
            "a VolumeSnapshot and a content that do not name each other",
            vec![("content.yaml", content("other")), ("snap.yaml", SNAPSHOT.into())],
            vec![
                "snap.yaml",
                "VolumeSnapshot default/s",
                "spec.source.volumeSnapshotContentName",
                "volumeSnapshotRef",
            ],
        ),
        case(
            "an ephemeral volume without a claim spec",
            vec![("pod.yaml", ephemeral_pod("          metadata: {}\n"))],
            vec![
                "pod.yaml",
                "Pod default/p",
                "spec.volumes[0].ephemeral.volumeClaimTemplate.spec",
                "missing",
            ],
        ),
        case(
            "an ephemeral volume naming a missing StorageClass",
            vec![(
                "pod.yaml",
                ephemeral_pod(
                    "          spec:\n            accessModes: [ReadWriteOnce]\n            storageClassName: fast\n            resources:\n              requests:\n                storage: 1Gi\n",
                ),
            )],
            vec![
                "pod.yaml",
                "Pod default/p",
                "spec.volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName",
                "fast",
            ],
        ),
        case(
            "a pod asking for a zone its class does not allow",
            vec![("0.yaml", zoned_class.clone()), ("pod.yaml", zonal_pod("us-east-2c"))],
            vec![
                "pod.yaml",
                "Pod default/app",
                "spec.nodeSelector",
                "us-east-2c",
                "StorageClass gp3",
            ],
        ),
        Case {
            extra: vec!["--node-zone", "us-east-2b"],
            ..case(
                "--node-zone outside what the class allows",
                vec![("0.yaml", zoned_class), ("pod.yaml", zonal_pod("us-east-2a"))],
                vec![
                    "0.yaml",
                    "StorageClass gp3",
                    "allowedTopologies",
                    "us-east-2b",
                    "--node-zone",
                ],
            )
        },
        Case {
            loose: vec![("pv.yaml", pv(""))],
            extra: vec!["--delete", "pv.yaml"],
            ..case(
                "deleting what is not there",
                vec![("0.yaml", CLASS.into()), ("pod.yaml", zonal_pod("us-east-2a"))],
                vec!["pv.yaml", "PersistentVolume pv", "metadata.name", "not there to delete"],
            )
        },
        Case {
            loose: vec![(
                "pod2.yaml",
                zonal_pod("us-east-2a").replace("image: busybox", "image: nginx"),
            )],
            extra: vec!["--delete", "0.yaml", "-f", "pod2.yaml"],
            ..case(
                "a pod applied again, changed, while the first one runs",
                vec![("0.yaml", CLASS.into()), ("pod.yaml", zonal_pod("us-east-2a"))],
                vec!["pod2.yaml", "Pod default/app", "metadata.name", "--delete it first"],
            )
        },
    ]
}

#[test]
fn what_these_workflows_cannot_do_is_refused_before_anything_is_made() {
    let mut failures = Vec::new();
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        let loose = tempfile::tempdir().unwrap();
        for (name, text) in &c.files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        for (name, text) in &c.loose {
            std::fs::write(loose.path().join(name), text).unwrap();
        }
        let mut args = vec!["-f".to_owned(), dir.path().display().to_string()];
        for a in &c.extra {
            let path = [loose.path(), dir.path()]
                .map(|d| d.join(a))
                .into_iter()
                .find(|p| p.exists());
            args.push(path.map_or_else(|| a.to_string(), |p| p.display().to_string()));
        }
        if let Err(wrong) = refused(&args, &c.says) {
            failures.push(format!("{}: {wrong}", c.what));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
