//! A Deployment's or Pod's volumes: each pod's claims (its own for a generic ephemeral volume),
//! where its containers mount them, and whether a claim has its volume in time for an apply's
//! updates and snapshots.

use std::collections::HashMap;

use super::{Builder, Listed, Pod, PodVolume, Result, Workload, WorkloadDoc, zones};

impl Builder {
    pub(super) fn finish_workloads(&mut self) -> Result<()> {
        let docs = std::mem::take(&mut self.workload_docs);
        for WorkloadDoc {
            origin,
            kind,
            namespace,
            name,
            pod,
            base,
            pod_names,
            ephemeral,
            ..
        } in docs
        {
            let replicas = pod_names.len() as u32;
            // The pod template's volumes; an ephemeral one stands for the first pod's claim.
            let mut volumes = Vec::new();
            for (i, v) in pod.volumes.iter().enumerate() {
                let (claim, read_only) = if let Some(claims) = ephemeral.get(&i) {
                    match claims.first() {
                        Some(&c) => (c, false),
                        None => continue,
                    }
                } else if let Some(src) = &v.persistent_volume_claim {
                    let field = format!("{base}.volumes[{i}].persistentVolumeClaim.claimName");
                    let claim = self.claim_index(&namespace, &src.claim_name).ok_or_else(|| {
                        origin.error(
                            &field,
                            format!(
                                "PersistentVolumeClaim {namespace}/{} is not defined in these files; the pod would never start",
                                src.claim_name
                            ),
                        )
                    })?;
                    if self.gone.terminating.contains(&claim) {
                        return Err(origin.error(
                            &field,
                            format!(
                                "PersistentVolumeClaim {namespace}/{} is being deleted; Kubernetes would not start the pod",
                                src.claim_name
                            ),
                        ));
                    }
                    (claim, src.read_only)
                } else {
                    continue;
                };
                volumes.push(PodVolume {
                    name: v.name.clone(),
                    claim,
                    read_only,
                    mount_paths: Vec::new(),
                    device_paths: Vec::new(),
                });
            }
            let containers = pod
                .init_containers
                .iter()
                .map(|c| (c, "initContainers"))
                .chain(pod.containers.iter().map(|c| (c, "containers")));
            let mut counters: HashMap<&str, usize> = HashMap::new();
            for (c, list) in containers {
                let ci = {
                    let n = counters.entry(list).or_default();
                    *n += 1;
                    *n - 1
                };
                for (j, m) in c.volume_mounts.iter().enumerate() {
                    let field = format!("{base}.{list}[{ci}].volumeMounts[{j}]");
                    let known = pod.volumes.iter().any(|v| v.name == m.name);
                    if !known {
                        return Err(origin.error(
                            &field,
                            format!("names volume {:?}, which the pod does not have", m.name),
                        ));
                    }
                    if let Some(v) = volumes.iter_mut().find(|v| v.name == m.name) {
                        if self.plan.claims[v.claim].block {
                            return Err(origin.error(
                                &field,
                                format!(
                                    "claim {} is volumeMode Block; mount it with volumeDevices, not volumeMounts",
                                    self.plan.claims[v.claim].name
                                ),
                            ));
                        }
                        v.mount_paths.push(m.mount_path.clone());
                    }
                }
                for (j, d) in c.volume_devices.iter().enumerate() {
                    let field = format!("{base}.{list}[{ci}].volumeDevices[{j}]");
                    let Some(v) = volumes.iter_mut().find(|v| v.name == d.name) else {
                        if replicas == 0 && pod.volumes.iter().any(|v| v.name == d.name) {
                            continue;
                        }
                        return Err(origin.error(
                            &field,
                            format!(
                                "names volume {:?}, which is not a PersistentVolumeClaim of the pod",
                                d.name
                            ),
                        ));
                    };
                    if !self.plan.claims[v.claim].block {
                        return Err(origin.error(
                            &field,
                            format!(
                                "claim {} is volumeMode Filesystem; a device needs a Block claim",
                                self.plan.claims[v.claim].name
                            ),
                        ));
                    }
                    v.device_paths.push(d.device_path.clone());
                }
            }
            // Each pod: the template's volumes, with its own claim for an ephemeral volume.
            let pods: Vec<Pod> = pod_names
                .iter()
                .enumerate()
                .map(|(r, pod_name)| Pod {
                    name: pod_name.clone(),
                    volumes: volumes
                        .iter()
                        .map(|v| {
                            let mut v = v.clone();
                            let index = pod.volumes.iter().position(|d| d.name == v.name);
                            if let Some(claims) = index.and_then(|i| ephemeral.get(&i)) {
                                v.claim = claims[r];
                            }
                            v
                        })
                        .collect(),
                })
                .collect();
            for v in pods.iter().flat_map(|p| &p.volumes) {
                let claim = &mut self.plan.claims[v.claim];
                claim.pods += 1;
                if claim.access_modes.iter().any(|m| m == "ReadWriteOncePod") && claim.pods > 1 {
                    return Err(origin.error(
                        "",
                        format!(
                            "claim {} is ReadWriteOncePod but more than one pod uses it; the second pod would never start",
                            claim.name
                        ),
                    ));
                }
            }
            if replicas > 0 {
                self.pod_rules.extend(zones::pod_rules(&origin, base, &pod));
            }
            let uses: Vec<String> = volumes
                .iter()
                .map(|v| {
                    let paths: Vec<&String> = v.mount_paths.iter().chain(&v.device_paths).collect();
                    let at = if paths.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " at {}",
                            paths.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    };
                    let claim = &self.plan.claims[v.claim];
                    if claim.owner.is_some() {
                        format!("ephemeral {}{at}", v.name)
                    } else {
                        format!("{}{at}", claim.name)
                    }
                })
                .collect();
            self.listed.push(Listed {
                label: kind.to_owned(),
                facts: format!(
                    "{namespace}/{name}, {replicas} {}{}{}",
                    if replicas == 1 { "pod" } else { "pods" },
                    if uses.is_empty() { "" } else { ", " },
                    uses.join("; ")
                ),
            });
            self.plan.workloads.push(Workload {
                phase: self.phase,
                kind: kind.to_owned(),
                namespace,
                name,
                pods,
            });
        }
        Ok(())
    }

    /// Whether the claim has its volume when this apply's updates and snapshots are played:
    /// bound by an earlier apply, or by this one before its snapshots (Immediate, or used by a
    /// pod that starts early, and not made from a source of this apply).
    pub(super) fn bound_early(&self, claim: usize) -> bool {
        let c = &self.plan.claims[claim];
        if c.static_pv.is_some() {
            return true;
        }
        if c.phase == self.phase && c.late {
            return false;
        }
        c.immediate
            || self.plan.workloads.iter().any(|w| {
                w.pods.iter().flat_map(|p| &p.volumes).any(|v| v.claim == claim)
                    && (w.phase < self.phase || !self.plan.is_late(w))
            })
    }
}
