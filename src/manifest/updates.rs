//! A later document for a claim already there: a resize (`resources.requests.storage`) or a
//! modify (`volumeAttributesClassName`), checked as Kubernetes and the driver check them against
//! the claim as it stands after the updates before it; and the sizes snapshots and restores get.

use super::kinds::{PvcSpec, Resources};
use super::{Builder, ClaimSource, Listed, Origin, Result, Update};
use crate::ebs::{self, Performance, VolumeType};
use crate::params;

impl Builder {
    pub(super) fn finish_updates(&mut self, start: usize) -> Result<()> {
        let updates = std::mem::take(&mut self.claim_updates);
        let late = std::mem::take(&mut self.late_listed);
        self.listed.extend(late);
        // Sizes and types as they stand after each update, to check the next one and the
        // snapshots taken after them; kept from one apply to the next.
        for c in &self.plan.claims[self.sizes.len()..] {
            let p = params::parse_create_request(&c.parameters, &c.mutable_parameters).ok();
            let performance = p.as_ref().and_then(|p| p.performance(c.size_gib).ok());
            self.sizes.push((c.required_bytes, c.size_gib));
            self.vacs.push(c.attributes_class.clone());
            self.perfs.push((c.volume_type, performance));
        }
        let mut size = std::mem::take(&mut self.sizes);
        let mut vac = std::mem::take(&mut self.vacs);
        let mut perf = std::mem::take(&mut self.perfs);
        let checked = self.check_updates(updates, &mut size, &mut vac, &mut perf);
        self.sizes = size;
        self.vacs = vac;
        self.perfs = perf;
        checked?;
        let size = &self.sizes;
        // A snapshot is as large as its source when it is taken (after the updates); a claim
        // restored from it must be at least that large.
        for s in &mut self.plan.snapshots {
            if let Some(c) = s.claim
                && s.phase == self.phase
            {
                s.size_gib = size[c].1;
            }
        }
        for i in start..self.plan.claims.len() {
            let (origin, _) = &self.claim_docs[i];
            let needed = match self.plan.claims[i].source {
                Some(ClaimSource::Snapshot(s)) => Some((self.plan.snapshots[s].size_gib, "snapshot")),
                Some(ClaimSource::Claim(c)) => Some((size[c].1, "source claim")),
                None => None,
            };
            if let Some((gib, what)) = needed
                && (self.plan.claims[i].required_bytes as u64) < gib * ebs::GIB
            {
                return Err(origin.error(
                    &format!("{}spec.resources.requests.storage", self.claim_fields[i]),
                    format!(
                        "{} is smaller than its {what} ({gib} GiB); ask for at least {gib}Gi",
                        self.plan.claims[i].size_text
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks one apply's claim updates against the claims as they stand, and records them.
    fn check_updates(
        &mut self,
        updates: Vec<(Origin, usize, PvcSpec)>,
        size: &mut [(i64, u64)],
        vac: &mut [Option<String>],
        perf: &mut [(VolumeType, Option<Performance>)],
    ) -> Result<()> {
        for (origin, i, spec) in updates {
            let first = &self.claim_docs[i].1;
            let claim = self.plan.claims[i].clone();
            // A document naming none of the immutable fields is a server-side apply of the fields
            // it names (`ebs-csi cost --plan` writes such claims): what it leaves out stays.
            let partial = spec.access_modes.is_empty()
                && spec.storage_class_name.is_none()
                && spec.volume_mode.is_none()
                && spec.data_source.is_none()
                && spec.data_source_ref.is_none()
                && spec.volume_name.is_none();
            let wanted_vac = match &spec.volume_attributes_class_name {
                None if partial => vac[i].clone(),
                named => named.clone(),
            };
            // Kubernetes: a bound claim's spec is immutable but for these two fields.
            let mut rest_new = spec.clone();
            let mut rest_old = first.clone();
            rest_new.resources = Resources::default();
            rest_old.resources = Resources::default();
            rest_new.volume_attributes_class_name = None;
            rest_old.volume_attributes_class_name = None;
            if rest_new.storage_class_name.is_none() {
                rest_new.storage_class_name = rest_old.storage_class_name.clone();
            }
            if !partial && rest_new != rest_old {
                return Err(origin.error(
                    "spec",
                    "a claim's spec is immutable but for resources.requests.storage and volumeAttributesClassName; \
                     this document changes more",
                ));
            }
            let (bytes, text) = match spec.resources.requests.get("storage") {
                Some(storage) => storage
                    .bytes()
                    .map_err(|e| origin.error("spec.resources.requests.storage", e))?,
                None if partial => (size[i].0, claim.size_text.clone()),
                None => return Err(origin.error("spec.resources.requests.storage", "is missing")),
            };
            if bytes == size[i].0 && wanted_vac == vac[i] {
                self.listed.push(Listed {
                    label: "PersistentVolumeClaim".into(),
                    facts: format!("{}: unchanged", claim.key()),
                });
                continue;
            }
            if claim.static_pv.is_some() {
                return Err(origin.error(
                    "",
                    "the claim is bound to a pre-provisioned PersistentVolume: Kubernetes resizes only claims whose \
                     StorageClass provisioned them, and the demo modifies only those",
                ));
            }
            if !self.bound_early(i) {
                return Err(origin.error(
                    "",
                    "the demo plays updates only on claims in use before the snapshots: not made from a source, \
                     and bound (Immediate, or used by a pod)",
                ));
            }
            if bytes < size[i].0 {
                return Err(origin.error(
                    "spec.resources.requests.storage",
                    format!(
                        "{text} is smaller than the claim's {}: volumes never shrink",
                        claim.size_text
                    ),
                ));
            }
            if bytes > size[i].0 {
                let class = self.plan.classes.get(&claim.class).ok_or_else(|| {
                    origin.error(
                        "spec.resources.requests.storage",
                        format!(
                            "StorageClass {} was deleted, and Kubernetes resizes a claim only when its class allows it",
                            claim.class
                        ),
                    )
                })?;
                if !class.allow_expansion {
                    return Err(origin.error(
                        "spec.resources.requests.storage",
                        format!(
                            "StorageClass {} does not set allowVolumeExpansion: true, so Kubernetes refuses to resize its claims",
                            class.name
                        ),
                    ));
                }
                let gib = ebs::size_gib(bytes, 0, perf[i].0)
                    .map_err(|e| origin.error("spec.resources.requests.storage", e.to_string()))?;
                size[i] = (bytes, gib);
                self.listed.push(Listed {
                    label: "PersistentVolumeClaim".into(),
                    facts: format!("update: {} to {text}", claim.key()),
                });
                self.updates.push(Update::Resize {
                    claim: i,
                    required_bytes: bytes,
                    size_text: text,
                    size_gib: gib,
                });
            }
            if wanted_vac != vac[i] {
                let Some(name) = wanted_vac.clone() else {
                    return Err(origin.error(
                        "spec.volumeAttributesClassName",
                        "cannot be removed once set; name another VolumeAttributesClass",
                    ));
                };
                let parameters = self.attributes_class(&origin, "spec.volumeAttributesClassName", &name)?;
                let change = params::parse_modify_params(&parameters)
                    .map_err(|e| origin.error("spec.volumeAttributesClassName", e.to_string()))?;
                let current = perf[i].1.unwrap_or_default();
                let (new_type, new_perf) = ebs::modified_performance(perf[i].0, size[i].1, &current, &change, false)
                    .map_err(|e| {
                        origin.error(
                            "spec.volumeAttributesClassName",
                            format!(
                                "VolumeAttributesClass {name} cannot apply to this {} GiB {} volume: {e}",
                                size[i].1, perf[i].0
                            ),
                        )
                    })?;
                perf[i] = (new_type, Some(new_perf));
                vac[i] = Some(name.clone());
                self.listed.push(Listed {
                    label: "PersistentVolumeClaim".into(),
                    facts: format!("update: {} to VolumeAttributesClass {name}", claim.key()),
                });
                self.updates.push(Update::Modify {
                    claim: i,
                    class: name,
                    parameters,
                });
            }
        }
        Ok(())
    }
}
