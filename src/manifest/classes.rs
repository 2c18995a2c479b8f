//! StorageClasses and VolumeAttributesClasses: checked as the external-provisioner and the
//! driver check their parameters, a StorageClass updated only where Kubernetes allows it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::kinds::StorageClassDoc;
use super::{Builder, DEFAULT_FSTYPE, DRIVER, Listed, Origin, PROVISIONER_KEYS, RESERVED_PREFIX, Result, StorageClass};
use crate::ebs::FsType;
use crate::params;

impl Builder {
    pub(super) fn storage_class(&mut self, origin: Origin, d: StorageClassDoc) -> Result<()> {
        let name = d.metadata.name.clone().unwrap_or_default();
        if let Some((_, first)) = self.class_origin.get(&name) {
            // Kubernetes lets only allowVolumeExpansion change.
            let same = first.provisioner == d.provisioner
                && first.parameters == d.parameters
                && first.volume_binding_mode == d.volume_binding_mode
                && first.reclaim_policy == d.reclaim_policy
                && first.mount_options == d.mount_options;
            if !same {
                return Err(origin.error(
                    "",
                    "a StorageClass is immutable but for allowVolumeExpansion; this document changes more \
                     (provisioner, parameters, volumeBindingMode, reclaimPolicy or mountOptions)",
                ));
            }
            let expand = d.allow_volume_expansion.unwrap_or(false);
            let facts = if first.allow_volume_expansion.unwrap_or(false) == expand {
                "unchanged".to_owned()
            } else {
                format!("update: allowVolumeExpansion {expand}")
            };
            self.late_listed.push(Listed {
                label: format!("StorageClass {name}"),
                facts,
            });
            if let Some(c) = self.plan.classes.get_mut(&name) {
                c.allow_expansion = expand;
            }
            if let Some(entry) = self.class_origin.get_mut(&name) {
                entry.1.allow_volume_expansion = d.allow_volume_expansion;
            }
            return Ok(());
        }
        match d.provisioner.as_deref() {
            Some(DRIVER) => {}
            Some(other) => {
                return Err(origin.error(
                    "provisioner",
                    format!("{other:?} is not this driver; ebs-csi provisions only for {DRIVER}"),
                ));
            }
            None => return Err(origin.error("provisioner", "is missing")),
        }
        let immediate = match d.volume_binding_mode.as_deref() {
            None | Some("Immediate") => true,
            Some("WaitForFirstConsumer") => false,
            Some(other) => {
                return Err(origin.error(
                    "volumeBindingMode",
                    format!("{other:?} is not Immediate or WaitForFirstConsumer"),
                ));
            }
        };
        if let Some(p) = d.reclaim_policy.as_deref()
            && !matches!(p, "Delete" | "Retain")
        {
            return Err(origin.error("reclaimPolicy", format!("{p:?} is not Delete or Retain")));
        }
        let mut parameters = HashMap::new();
        let mut fs_type = DEFAULT_FSTYPE.to_owned();
        for (k, v) in &d.parameters.strings(&origin, "parameters")? {
            if k.starts_with(RESERVED_PREFIX) {
                if !PROVISIONER_KEYS.contains(&k.as_str()) {
                    return Err(origin.error(
                        &format!("parameters.{k}"),
                        format!("the external-provisioner refuses unknown keys under {RESERVED_PREFIX}"),
                    ));
                }
                if k == params::FSTYPE_KEY {
                    fs_type.clone_from(v);
                }
            } else {
                parameters.insert(k.clone(), v.clone());
            }
        }
        if let Err(e) = fs_type.parse::<FsType>() {
            return Err(origin.error(&format!("parameters.{}", params::FSTYPE_KEY), e.to_string()));
        }
        // The parameters alone (sizes come with each claim).
        let parsed = params::parse_create_params(&parameters).map_err(|e| origin.error("parameters", e.to_string()))?;
        let mut allowed = Vec::new();
        for (i, term) in d.allowed_topologies.iter().enumerate() {
            let mut terms: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
            for (j, req) in term.match_label_expressions.iter().enumerate() {
                if req.key.is_empty() || req.values.is_empty() {
                    return Err(origin.error(
                        &format!("allowedTopologies[{i}].matchLabelExpressions[{j}]"),
                        "needs a key and at least one value",
                    ));
                }
                terms = terms
                    .iter()
                    .flat_map(|t| {
                        req.values.iter().map(move |v| {
                            let mut t = t.clone();
                            t.insert(req.key.clone(), v.clone());
                            t
                        })
                    })
                    .collect();
            }
            allowed.extend(terms.into_iter().filter(|t| !t.is_empty()));
        }
        let mut facts = format!(
            "provisioner {DRIVER}, {}, {}{}, {fs_type}",
            if immediate { "Immediate" } else { "WaitForFirstConsumer" },
            parsed.volume_type,
            if parameters.keys().any(|k| k.eq_ignore_ascii_case("type")) {
                ""
            } else {
                " (default)"
            },
        );
        let mut others: Vec<_> = parameters
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("type"))
            .collect();
        others.sort();
        for (k, v) in others {
            facts.push_str(&format!(", {k}={v}"));
        }
        if d.allow_volume_expansion == Some(true) {
            facts.push_str(", expandable");
        }
        if !allowed.is_empty() {
            let zones: BTreeSet<&String> = allowed.iter().flat_map(|t| t.values()).collect();
            facts.push_str(&format!(
                ", allowedTopologies {}",
                zones.into_iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        self.listed.push(Listed {
            label: format!("StorageClass {name}"),
            facts,
        });
        self.plan.classes.insert(
            name.clone(),
            StorageClass {
                name: name.clone(),
                immediate,
                allow_expansion: d.allow_volume_expansion.unwrap_or(false),
                parameters,
                fs_type,
                mount_options: d.mount_options.clone(),
                allowed,
                retain: d.reclaim_policy.as_deref() == Some("Retain"),
            },
        );
        self.class_origin.insert(name, (origin, d));
        Ok(())
    }

    pub(super) fn default_class(&self) -> Option<String> {
        self.class_origin
            .iter()
            .find(|(_, (_, d))| {
                d.metadata
                    .annotations
                    .get("storageclass.kubernetes.io/is-default-class")
                    .is_some_and(|v| v == "true")
            })
            .map(|(n, _)| n.clone())
    }

    /// A VolumeAttributesClass's parameters, checked as ControllerModifyVolume will check them.
    pub(super) fn attributes_class(&self, origin: &Origin, field: &str, name: &str) -> Result<HashMap<String, String>> {
        let (vac_origin, vac) = self.attribute_classes.get(name).ok_or_else(|| {
            origin.error(
                field,
                format!("VolumeAttributesClass {name:?} is not defined in these files"),
            )
        })?;
        if vac.driver_name.as_deref() != Some(DRIVER) {
            return Err(origin.error(
                field,
                format!(
                    "VolumeAttributesClass {name} is for driver {:?}, not {DRIVER}",
                    vac.driver_name.as_deref().unwrap_or("")
                ),
            ));
        }
        let parameters: HashMap<String, String> =
            vac.parameters.strings(vac_origin, "parameters")?.into_iter().collect();
        params::parse_modify_params(&parameters)
            .map_err(|e| origin.error(field, format!("VolumeAttributesClass {name}: parameters: {e}")))?;
        Ok(parameters)
    }
}
