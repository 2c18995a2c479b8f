//! Generic ephemeral volumes (`spec.volumes[].ephemeral.volumeClaimTemplate`): when a pod is
//! created, Kubernetes makes the claim `<pod>-<volume>` from the template, owned by the pod; it is
//! provisioned, attached and published as any claim, and deleted with the pod. A Deployment's
//! pods get generated names (`<deployment>-<template hash>-<suffix>`), so each has its own claim.

use super::{Builder, MAX_PODS, Result};

/// The characters Kubernetes uses in generated names (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated(len: usize) -> String {
    (0..len)
        .map(|_| NAME_ALPHABET[rand::random_range(0..NAME_ALPHABET.len())] as char)
        .collect()
}

impl Builder {
    /// Names the pods of each workload this apply added and makes their ephemeral volumes'
    /// claims, before the claims are checked.
    pub(super) fn ephemeral_claims(&mut self) -> Result<()> {
        let mut docs = std::mem::take(&mut self.workload_docs);
        let made = self.name_pods(&mut docs);
        self.workload_docs = docs;
        made
    }

    fn name_pods(&mut self, docs: &mut [super::WorkloadDoc]) -> Result<()> {
        for w in docs.iter_mut() {
            self.check_namespace(&w.origin, &w.namespace)?;
            w.pod_names = match w.replicas {
                None => vec![w.name.clone()],
                Some(r) if (0..=i64::from(MAX_PODS)).contains(&r) => {
                    let hash = generated(10);
                    (0..r).map(|_| format!("{}-{hash}-{}", w.name, generated(5))).collect()
                }
                Some(r) => {
                    return Err(w.origin.error(
                        "spec.replicas",
                        format!("{r} pods: the demo plays 0 to {MAX_PODS} pods on its one node"),
                    ));
                }
            };
            for (i, v) in w.pod.volumes.iter().enumerate() {
                let Some(e) = &v.ephemeral else { continue };
                let field = format!("{}.volumes[{i}].ephemeral", w.base);
                if v.persistent_volume_claim.is_some() {
                    return Err(w.origin.error(
                        &field,
                        "a volume has one source: ephemeral or persistentVolumeClaim, not both",
                    ));
                }
                let spec = e
                    .volume_claim_template
                    .as_ref()
                    .and_then(|t| t.spec.clone())
                    .ok_or_else(|| {
                        w.origin
                            .error(&format!("{field}.volumeClaimTemplate.spec"), "is missing")
                    })?;
                let mut claims = Vec::new();
                for pod in &w.pod_names {
                    let name = format!("{pod}-{}", v.name);
                    if self.claim_index(&w.namespace, &name).is_some() {
                        return Err(w.origin.error(
                            &field,
                            format!(
                                "its claim would be {}/{name}, which already exists and is not the pod's; Kubernetes \
                                 would not start the pod",
                                w.namespace
                            ),
                        ));
                    }
                    let owner = format!("Pod {}/{pod}", w.namespace);
                    let c = self.new_claim(
                        w.origin.clone(),
                        format!("{field}.volumeClaimTemplate."),
                        w.namespace.clone(),
                        name.clone(),
                        spec.clone(),
                        Some(owner),
                    );
                    self.seen.insert(
                        format!("PersistentVolumeClaim {}/{name}", w.namespace),
                        (self.phase, serde_yaml_ng::Value::Null),
                    );
                    claims.push(c);
                }
                w.ephemeral.insert(i, claims);
            }
        }
        Ok(())
    }
}
