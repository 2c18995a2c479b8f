//! `ebs-csi demo`: Kubernetes YAML played end to end on the local backend, every step a real
//! gRPC call to a real driver process. The demo plays the external-provisioner, -attacher,
//! -resizer and -snapshotter and kubelet with the calls, parameters, topology, volume
//! capabilities and paths they use, for the objects in the YAML (src/manifest.rs reads and checks
//! them first). With no files it plays the seed's: examples/seed/ and examples/seed/day-2/,
//! built into the binary. The command line's `-f` and `--delete` runs are played in order, as a
//! user's `kubectl apply -f` and `kubectl delete -f`.
//!
//! The parts: `groups` turns the command line into those runs; `driver` starts the driver;
//! `player` plays the cluster's programs (`play` each run, `changes` resizes, modifies and
//! snapshots, `delete` what a deletion sets off, `page` what the pods do with their volumes,
//! `import` the volumes and snapshots that pre-provisioned objects name, which on AWS exist
//! already); `report` is all the user sees of it.

mod changes;
mod delete;
mod driver;
mod groups;
mod import;
mod page;
mod play;
mod player;
mod report;

pub use groups::{Options, Step};

use crate::error::Error;
use crate::manifest;
use player::Player;
use report::Report;

const DRIVER: &str = manifest::DRIVER;
const NODE: &str = "demo-node";
const PAGE: &str = "<h1>Hello from nginx on an ebs-csi volume</h1>\n";

/// The seed's files (and its day-2 follow-up: resize, snapshot, restore), as `demo` with no `-f`
/// plays them.
const SEED: [(&str, &str); 10] = [
    (
        "examples/seed/namespace.yaml",
        include_str!("../examples/seed/namespace.yaml"),
    ),
    ("examples/seed/sc.yaml", include_str!("../examples/seed/sc.yaml")),
    ("examples/seed/pvc.yaml", include_str!("../examples/seed/pvc.yaml")),
    (
        "examples/seed/deployment.yaml",
        include_str!("../examples/seed/deployment.yaml"),
    ),
    (
        "examples/seed/day-2/1-sc-expandable.yaml",
        include_str!("../examples/seed/day-2/1-sc-expandable.yaml"),
    ),
    (
        "examples/seed/day-2/2-pvc-20Gi.yaml",
        include_str!("../examples/seed/day-2/2-pvc-20Gi.yaml"),
    ),
    (
        "examples/seed/day-2/3-snapshotclass.yaml",
        include_str!("../examples/seed/day-2/3-snapshotclass.yaml"),
    ),
    (
        "examples/seed/day-2/4-snapshot.yaml",
        include_str!("../examples/seed/day-2/4-snapshot.yaml"),
    ),
    (
        "examples/seed/day-2/5-pvc-restore.yaml",
        include_str!("../examples/seed/day-2/5-pvc-restore.yaml"),
    ),
    (
        "examples/seed/day-2/6-deployment-restore.yaml",
        include_str!("../examples/seed/day-2/6-deployment-restore.yaml"),
    ),
];

/// Runs the demo; the exit code says whether every step worked (1: the YAML cannot be played or
/// a step failed; 2: cannot run here).
pub async fn run(options: Options) -> i32 {
    let keep = options.keep;
    let node = manifest::DemoNode {
        name: NODE.into(),
        zones: options.zones.clone(),
        zone: options.node_zone.clone(),
    };
    // The YAML is checked before anything is made, and without needing root.
    let plan = match groups::groups(&options.steps).and_then(|g| manifest::plan(&g, &node)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ebs-csi demo: {e}");
            return 1;
        }
    };
    if let Some(why) = driver::precondition() {
        eprintln!("{why}");
        return 2;
    }
    let dir = std::env::temp_dir().join(format!("ebs-csi-demo-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return 1;
    }
    let mut child = match driver::start_driver(&dir, &plan) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let code = match driver::connect(&dir, &mut child).await {
        Err(e) => {
            eprintln!("{e}");
            1
        }
        Ok(channel) => {
            let mut demo = Player::new(channel, plan, &dir);
            Report::begin(&groups::describe(&options.steps), &dir);
            let outcome = tokio::select! {
                r = demo.run() => r,
                _ = tokio::signal::ctrl_c() => Err(Error::Aborted("interrupted".into())),
            };
            if let Err(e) = &outcome {
                eprintln!("demo failed: {e}");
            }
            if keep && outcome.is_ok() {
                Report::kept(&dir, child.id());
                return 0;
            }
            let clean = demo.teardown().await;
            match (outcome.is_ok(), clean) {
                (true, true) => {
                    demo.report.all_worked();
                    0
                }
                _ => 1,
            }
        }
    };
    driver::stop_driver(&mut child);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ClaimSource;
    use crate::topology::WELL_KNOWN_ZONE_KEY;

    #[test]
    fn the_built_in_seed_plays_the_seed_and_its_day_two() {
        let plan = manifest::plan(&groups::groups(&[]).unwrap(), &manifest::DemoNode::named(NODE)).unwrap();
        let claim = &plan.claims[0];
        assert_eq!(claim.key(), "dev-ns/ebs-claim");
        assert_eq!(claim.size_gib, 10);
        assert!(!claim.immediate, "ebs-sc waits for the first consumer");
        assert_eq!(claim.parameters["csi.storage.k8s.io/pvc/name"], "ebs-claim");
        assert_eq!(claim.parameters["csi.storage.k8s.io/pvc/namespace"], "dev-ns");
        assert_eq!(claim.parameters["csi.storage.k8s.io/pv/name"], claim.pv_name());
        assert_eq!(claim.fs_type, "ext4");
        assert!(matches!(
            plan.phases[0].updates[..],
            [manifest::Update::Resize { size_gib: 20, .. }]
        ));
        assert_eq!(
            plan.zones,
            ["local-1a", "local-1b", "local-1c"],
            "no zone named: the default region"
        );
        assert_eq!(plan.node.topology[WELL_KNOWN_ZONE_KEY], "local-1a");
        assert_eq!(plan.snapshots.len(), 1);
        assert_eq!(plan.claims[1].source, Some(ClaimSource::Snapshot(0)));
    }
}
