//! PersistentVolumeClaims: the StorageClass each gets, its size, access modes and volume mode,
//! checked as the provisioner and the driver will check its CreateVolume; and where its content
//! comes from (a VolumeSnapshot or a claim to clone).

use std::collections::HashMap;

use super::kinds::PvcSpec;
use super::{Builder, Claim, ClaimSource, Listed, Origin, Result, csi_access_mode, uid};
use crate::capability::check_capability;
use crate::ebs::{self, CreateParams, FsType, VolumeType};
use crate::params;

impl Builder {
    pub(super) fn claim(&mut self, origin: Origin, namespace: String, name: String, spec: PvcSpec) -> Result<()> {
        if let Some(i) = self.claim_index(&namespace, &name) {
            if let Some(owner) = &self.plan.claims[i].owner {
                return Err(origin.error(
                    "metadata.name",
                    format!("is the claim of {owner}'s generic ephemeral volume; Kubernetes would not start the pod"),
                ));
            }
            if self.gone.terminating.contains(&i) && self.claim_docs[i].1 != spec {
                return Err(origin.error(
                    "metadata.name",
                    "is being deleted (Terminating until the pods using it are deleted); it cannot be changed",
                ));
            }
            self.claim_updates.push((origin, i, spec));
            return Ok(());
        }
        self.new_claim(origin, String::new(), namespace, name, spec, None);
        Ok(())
    }

    /// Records a claim to be checked by `finish_claims`; `field` is where its spec is in the
    /// document, `owner` the pod of an ephemeral volume's claim.
    pub(super) fn new_claim(
        &mut self,
        origin: Origin,
        field: String,
        namespace: String,
        name: String,
        spec: PvcSpec,
        owner: Option<String>,
    ) -> usize {
        self.claim_docs.push((origin.clone(), spec.clone()));
        self.claim_fields.push(field);
        // Filled in by finish(), once every class is known.
        self.plan.claims.push(Claim {
            phase: self.phase,
            namespace,
            name,
            uid: uid(),
            file: origin.file.clone(),
            immediate: true,
            access_modes: spec.access_modes.clone(),
            owner,
            ..Default::default()
        });
        self.plan.claims.len() - 1
    }

    /// Whether a claim's data source is an object an earlier apply made (then it is provisioned
    /// with the other claims), not one of its own apply (then after that apply's snapshots).
    fn source_is_earlier(&self, namespace: &str, spec: &PvcSpec) -> bool {
        let Some(src) = spec.data_source_ref.as_ref().or(spec.data_source.as_ref()) else {
            return true;
        };
        match src.kind.as_str() {
            "VolumeSnapshot" => self
                .live_snapshot(namespace, &src.name)
                .is_some_and(|s| self.plan.snapshots[s].phase < self.phase),
            _ => self
                .claim_index(namespace, &src.name)
                .is_some_and(|c| self.plan.claims[c].phase < self.phase),
        }
    }

    pub(super) fn finish_claims(&mut self, start: usize) -> Result<()> {
        let default_class = self.default_class();
        let docs = std::mem::take(&mut self.claim_docs);
        for (i, (origin, spec)) in docs.iter().enumerate().skip(start) {
            let prefix = self.claim_fields[i].clone();
            let f = |name: &str| format!("{prefix}{name}");
            let namespace = self.plan.claims[i].namespace.clone();
            self.check_namespace(origin, &namespace)?;
            if spec.volume_name.is_some() || spec.storage_class_name.as_deref() == Some("") {
                self.bind_static(i, origin, &prefix, spec, default_class.as_deref())?;
                continue;
            }
            let class_name = match spec.storage_class_name.as_deref() {
                Some(n) => n.to_owned(),
                None => default_class.clone().ok_or_else(|| {
                    origin.error(
                        &f("spec.storageClassName"),
                        "is not set and no StorageClass in these files is the default (storageclass.kubernetes.io/is-default-class: \"true\")",
                    )
                })?,
            };
            let class = self.plan.classes.get(&class_name).cloned().ok_or_else(|| {
                origin.error(
                    &f("spec.storageClassName"),
                    format!("StorageClass {class_name:?} is not defined in these files"),
                )
            })?;
            let block = match spec.volume_mode.as_deref() {
                None | Some("Filesystem") => false,
                Some("Block") => true,
                Some(other) => {
                    return Err(origin.error(&f("spec.volumeMode"), format!("{other:?} is not Filesystem or Block")));
                }
            };
            let storage = spec
                .resources
                .requests
                .get("storage")
                .ok_or_else(|| origin.error(&f("spec.resources.requests.storage"), "is missing"))?;
            let (required_bytes, size_text) = storage
                .bytes()
                .map_err(|e| origin.error(&f("spec.resources.requests.storage"), e))?;
            csi_access_mode(&spec.access_modes, true).map_err(|e| origin.error(&f("spec.accessModes"), e))?;
            let mut mutable = HashMap::new();
            if let Some(vac) = &spec.volume_attributes_class_name {
                mutable = self.attributes_class(origin, &f("spec.volumeAttributesClassName"), vac)?;
            }
            let late = !self.source_is_earlier(&namespace, spec);
            if let Some((class_origin, _)) = self.class_origin.get(&class_name) {
                self.class_of.insert(i, class_origin.clone());
            }
            let claim = &mut self.plan.claims[i];
            claim.class = class_name.clone();
            claim.immediate = class.immediate;
            claim.required_bytes = required_bytes;
            claim.size_text = size_text;
            claim.block = block;
            claim.late = late;
            claim.allowed = class.allowed.clone();
            claim.retain = class.retain;
            if !block {
                claim.fs_type = class.fs_type.clone();
                claim.mount_flags = class.mount_options.clone();
            }
            let cap = claim.capability(true);
            let cap_check = check_capability(&cap).map_err(|e| origin.error(&f("spec.accessModes"), e.to_string()))?;
            let pv = claim.pv_name();
            let mut parameters = class.parameters.clone();
            parameters.insert("csi.storage.k8s.io/pvc/name".into(), claim.name.clone());
            parameters.insert("csi.storage.k8s.io/pvc/namespace".into(), claim.namespace.clone());
            parameters.insert("csi.storage.k8s.io/pv/name".into(), pv);
            claim.attributes_class.clone_from(&spec.volume_attributes_class_name);
            let p: CreateParams = params::parse_create_request(&parameters, &mutable).map_err(|e| {
                origin.error(
                    &f(&format!("spec.storageClassName ({class_name}) parameters")),
                    e.to_string(),
                )
            })?;
            if !block {
                let fs: FsType = class
                    .fs_type
                    .parse()
                    .map_err(|e: crate::error::Error| origin.error("", e.to_string()))?;
                p.validate_for_fs(fs)
                    .map_err(|e| origin.error(&f("spec.storageClassName"), e.to_string()))?;
            }
            if cap_check.multi_node && !matches!(p.volume_type, VolumeType::Io1 | VolumeType::Io2) {
                return Err(origin.error(
                    &f("spec.accessModes"),
                    format!(
                        "{} needs a multi-attach volume, which only io1 and io2 can be; StorageClass {class_name} makes {}",
                        spec.access_modes.join(", "),
                        p.volume_type
                    ),
                ));
            }
            let gib = ebs::size_gib(required_bytes, 0, p.volume_type)
                .map_err(|e| origin.error(&f("spec.resources.requests.storage"), e.to_string()))?;
            p.performance(gib)
                .map_err(|e| origin.error(&f("spec.resources.requests.storage"), e.to_string()))?;
            claim.size_gib = gib;
            claim.volume_type = p.volume_type;
            claim.parameters = parameters;
            claim.mutable_parameters = mutable;
            let mut facts = format!("{}, {}, {}", claim.key(), claim.size_text, spec.access_modes.join(", "));
            if block {
                facts.push_str(", Block");
            }
            if let Some(v) = &claim.attributes_class {
                facts.push_str(&format!(", VolumeAttributesClass {v}"));
            }
            if let Some(src) = spec.data_source_ref.as_ref().or(spec.data_source.as_ref()) {
                facts.push_str(&format!(", from {} {}", src.kind, src.name));
            }
            if let Some(owner) = &claim.owner {
                facts.push_str(&format!(", ephemeral: {owner}'s, deleted with it"));
            }
            self.listed.push(Listed {
                label: "PersistentVolumeClaim".into(),
                facts,
            });
        }
        self.claim_docs = docs;
        Ok(())
    }

    /// dataSource / dataSourceRef: a VolumeSnapshot or another claim (a clone).
    pub(super) fn finish_sources(&mut self, start: usize) -> Result<()> {
        for i in start..self.plan.claims.len() {
            if self.plan.claims[i].static_pv.is_some() {
                continue;
            }
            let (origin, spec) = self.claim_docs[i].clone();
            let prefix = self.claim_fields[i].clone();
            let (field, src) = match (&spec.data_source_ref, &spec.data_source) {
                (Some(r), _) => (format!("{prefix}spec.dataSourceRef"), r.clone()),
                (None, Some(r)) => (format!("{prefix}spec.dataSource"), r.clone()),
                (None, None) => continue,
            };
            let field = field.as_str();
            let mode_field = format!("{prefix}spec.volumeMode");
            let namespace = self.plan.claims[i].namespace.clone();
            if src.namespace.as_deref().is_some_and(|n| n != namespace) {
                return Err(origin.error(
                    &format!("{field}.namespace"),
                    "cross-namespace data sources are not played by the demo",
                ));
            }
            let source = match (src.api_group.as_deref().unwrap_or(""), src.kind.as_str()) {
                ("snapshot.storage.k8s.io", "VolumeSnapshot") => {
                    let s = self.live_snapshot(&namespace, &src.name).ok_or_else(|| {
                        origin.error(
                            &format!("{field}.name"),
                            format!("VolumeSnapshot {namespace}/{} is not defined in these files", src.name),
                        )
                    })?;
                    match (self.plan.snapshots[s].claim, self.plan.snapshots[s].content) {
                        (Some(from), _) if self.plan.claims[from].block != self.plan.claims[i].block => {
                            return Err(origin.error(
                                &mode_field,
                                "differs from the snapshot's source claim; the provisioner refuses to convert a volume's mode",
                            ));
                        }
                        (_, Some(content)) => self.restore_from_content(content, i, &origin, &mode_field)?,
                        _ => {}
                    }
                    ClaimSource::Snapshot(s)
                }
                ("", "PersistentVolumeClaim") => {
                    let from = self.claim_index(&namespace, &src.name).ok_or_else(|| {
                        origin.error(
                            &format!("{field}.name"),
                            format!(
                                "PersistentVolumeClaim {namespace}/{} is not defined in these files",
                                src.name
                            ),
                        )
                    })?;
                    if !self.bound_early(from) {
                        return Err(origin.error(
                            &format!("{field}.name"),
                            format!(
                                "claim {} has no volume to clone: it waits for a first consumer that never comes, \
                                 or is itself made from a source",
                                src.name
                            ),
                        ));
                    }
                    if self.plan.claims[from].class != self.plan.claims[i].class {
                        return Err(origin.error(
                            &format!("{prefix}spec.storageClassName"),
                            "a clone must use its source claim's StorageClass",
                        ));
                    }
                    if self.plan.claims[from].block != self.plan.claims[i].block {
                        return Err(origin.error(&mode_field, "a clone must have its source claim's volumeMode"));
                    }
                    ClaimSource::Claim(from)
                }
                (group, kind) => {
                    return Err(origin.error(
                        field,
                        format!(
                            "{kind} ({}) is not a data source the provisioner takes for this driver; use a VolumeSnapshot or a PersistentVolumeClaim",
                            if group.is_empty() { "core" } else { group }
                        ),
                    ));
                }
            };
            self.plan.claims[i].source = Some(source);
        }
        Ok(())
    }
}
