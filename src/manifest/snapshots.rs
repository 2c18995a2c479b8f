//! VolumeSnapshots taken of claims: their class, checked as the external-snapshotter checks it,
//! and the parameters CreateSnapshot gets. A VolumeSnapshot bound to a pre-provisioned
//! VolumeSnapshotContent is in `snapshot_import`.

use std::collections::HashMap;

use super::{Builder, DRIVER, Listed, RESERVED_PREFIX, Result, SNAPSHOTTER_KEYS, Snapshot, uid};
use crate::params;

impl Builder {
    pub(super) fn finish_snapshots(&mut self) -> Result<()> {
        let docs = std::mem::take(&mut self.snapshot_docs);
        for (origin, namespace, name, spec) in docs {
            self.check_namespace(&origin, &namespace)?;
            if let Some(content) = &spec.source.volume_snapshot_content_name {
                let content = content.clone();
                self.bind_content(&origin, namespace, name, &content)?;
                continue;
            }
            let field = "spec.source.persistentVolumeClaimName";
            let claim_name = spec
                .source
                .persistent_volume_claim_name
                .clone()
                .ok_or_else(|| origin.error(field, "is missing"))?;
            let claim = self.claim_index(&namespace, &claim_name).ok_or_else(|| {
                origin.error(
                    field,
                    format!("PersistentVolumeClaim {namespace}/{claim_name} is not defined in these files"),
                )
            })?;
            if !self.bound_early(claim) {
                return Err(origin.error(
                    field,
                    format!(
                        "claim {claim_name} has no volume when snapshots are taken: its StorageClass waits for a \
                         first consumer and no pod uses it, or it is itself made from a snapshot or a claim"
                    ),
                ));
            }
            let class_field = "spec.volumeSnapshotClassName";
            let class_name = match &spec.volume_snapshot_class_name {
                Some(c) => c.clone(),
                None => self
                    .snapshot_classes
                    .iter()
                    .find(|(_, (_, d))| {
                        d.metadata
                            .annotations
                            .get("snapshot.storage.kubernetes.io/is-default-class")
                            .is_some_and(|v| v == "true")
                    })
                    .map(|(n, _)| n.clone())
                    .ok_or_else(|| {
                        origin.error(
                            class_field,
                            "is not set and no VolumeSnapshotClass in these files is the default \
                             (snapshot.storage.kubernetes.io/is-default-class: \"true\")",
                        )
                    })?,
            };
            let (class_origin, class) = self.snapshot_classes.get(&class_name).ok_or_else(|| {
                origin.error(
                    class_field,
                    format!("VolumeSnapshotClass {class_name:?} is not defined in these files"),
                )
            })?;
            if class.driver.as_deref() != Some(DRIVER) {
                return Err(class_origin.error(
                    "driver",
                    format!("{:?} is not {DRIVER}", class.driver.as_deref().unwrap_or("")),
                ));
            }
            let retain = match class.deletion_policy.as_deref() {
                Some("Retain") => true,
                Some("Delete") => false,
                Some(other) => {
                    return Err(class_origin.error("deletionPolicy", format!("{other:?} is not Delete or Retain")));
                }
                None => return Err(class_origin.error("deletionPolicy", "is missing (it is required)")),
            };
            let uid = uid();
            let mut parameters = HashMap::new();
            for (k, v) in &class.parameters.strings(class_origin, "parameters")? {
                if k.starts_with(RESERVED_PREFIX) {
                    if !SNAPSHOTTER_KEYS.contains(&k.as_str()) {
                        return Err(class_origin.error(
                            &format!("parameters.{k}"),
                            format!("the external-snapshotter refuses unknown keys under {RESERVED_PREFIX}"),
                        ));
                    }
                } else {
                    parameters.insert(k.clone(), v.clone());
                }
            }
            // The driver's own parser; the region's zones are decided later, so fast-restore
            // zones are checked by the driver when the snapshot is taken.
            let named: Vec<String> = parameters
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("fastSnapshotRestoreAvailabilityZones"))
                .flat_map(|(_, v)| v.split(',').map(|z| z.trim().to_owned()))
                .collect();
            let asked = params::parse_snapshot_params(&parameters, &named, crate::ebs::now_ms())
                .map_err(|e| class_origin.error("parameters", e.to_string()))?;
            if asked.outpost_arn.is_some() {
                return Err(class_origin.error("parameters.outpostArn", "the demo's local backend has no Outposts"));
            }
            // The snapshotter's --extra-create-metadata.
            parameters.insert("csi.storage.k8s.io/volumesnapshot/name".into(), name.clone());
            parameters.insert("csi.storage.k8s.io/volumesnapshot/namespace".into(), namespace.clone());
            parameters.insert(
                "csi.storage.k8s.io/volumesnapshotcontent/name".into(),
                format!("snapcontent-{uid}"),
            );
            self.listed.push(Listed {
                label: "VolumeSnapshot".into(),
                facts: format!("{namespace}/{name} of {claim_name}, class {class_name}"),
            });
            self.plan.snapshots.push(Snapshot {
                phase: self.phase,
                namespace,
                name,
                uid,
                class: class_name,
                claim: Some(claim),
                content: None,
                retain,
                parameters,
                // Set after the updates are known.
                size_gib: 0,
            });
        }
        Ok(())
    }
}
