//! Where the demo's one node goes. The objects name zones (a StorageClass's allowedTopologies, a
//! PersistentVolume's node affinity, a pod's nodeSelector or node affinity); when they do, those
//! zones make the demo's local region, and its node goes in the first zone that every constraint
//! of every pod allows, as the scheduler would need. `--zones` and `--node-zone` override. A
//! constraint no zone meets is refused, naming the file, the object and the field.
//!
//! Only zone labels are checked (`topology.kubernetes.io/zone`, `topology.ebs.csi.aws.com/zone`
//! and the legacy `failure-domain.beta.kubernetes.io/zone`): the demo's node is taken to carry
//! whatever other labels the pods ask for.

use std::collections::{BTreeMap, BTreeSet};

use super::kinds::{NodeSelector, PodSpec, Requirement, SelectorTerm};
use super::{Builder, ManifestError, NodeFacts, Origin, Result, Term, topology_requirement};
use crate::cloud::local::default_zones;
use crate::csi::{Topology, TopologyRequirement};
use crate::topology::{OS_KEY, WELL_KNOWN_ZONE_KEY, ZONE_KEY, Zones};

const LEGACY_ZONE_KEY: &str = "failure-domain.beta.kubernetes.io/zone";

fn is_zone_key(key: &str) -> bool {
    matches!(key, ZONE_KEY | WELL_KNOWN_ZONE_KEY | LEGACY_ZONE_KEY)
}

/// What the command line says of the demo's node: its name, and the region's zones and the
/// node's zone when given (`--zones`, `--node-zone`).
#[derive(Clone, Debug, Default)]
pub struct DemoNode {
    pub name: String,
    pub zones: Vec<String>,
    pub zone: Option<String>,
}

impl DemoNode {
    /// A node whose zones the YAML decides.
    pub fn named(name: &str) -> Self {
        DemoNode {
            name: name.to_owned(),
            ..Default::default()
        }
    }
}

impl Requirement {
    fn allows(&self, zone: &str) -> bool {
        if !is_zone_key(&self.key) {
            return true;
        }
        match self.operator.as_str() {
            "In" => self.values.iter().any(|v| v == zone),
            "NotIn" => !self.values.iter().any(|v| v == zone),
            "Exists" => true,
            _ => false,
        }
    }
}

impl SelectorTerm {
    fn allows(&self, zone: &str) -> bool {
        // An empty term matches no node.
        !(self.match_expressions.is_empty() && self.match_fields.is_empty())
            && self.match_expressions.iter().all(|r| r.allows(zone))
    }
}

impl NodeSelector {
    pub(super) fn allows(&self, zone: &str) -> bool {
        self.node_selector_terms.iter().any(|t| t.allows(zone))
    }

    fn named(&self) -> Vec<String> {
        self.node_selector_terms
            .iter()
            .flat_map(|t| &t.match_expressions)
            .filter(|r| is_zone_key(&r.key) && r.operator == "In")
            .flat_map(|r| r.values.clone())
            .collect()
    }

    /// Its zone requirements, for the listing.
    pub(super) fn describe(&self) -> String {
        let terms: Vec<String> = self
            .node_selector_terms
            .iter()
            .map(|t| {
                let reqs: Vec<String> = t
                    .match_expressions
                    .iter()
                    .filter(|r| is_zone_key(&r.key))
                    .map(|r| format!("zone {} {}", r.operator, r.values.join(", ")))
                    .collect();
                if reqs.is_empty() {
                    "any zone".to_owned()
                } else {
                    reqs.join(" and ")
                }
            })
            .collect();
        terms.join(" or ")
    }
}

#[derive(Clone, Debug)]
enum RuleKind {
    /// allowedTopologies terms, matched against the node's topology as the scheduler does.
    Terms(Vec<Term>),
    Selector(NodeSelector),
    /// A pod's nodeSelector.
    Labels(BTreeMap<String, String>),
    /// The zone an Immediate claim's volume is made in.
    Zone(String),
}

/// One constraint on the node's zone: where it is written, and the pod it keeps off other zones.
#[derive(Clone, Debug)]
pub(super) struct Rule {
    origin: Origin,
    field: String,
    pod: String,
    /// What the constraint is, when its field alone does not say.
    note: String,
    kind: RuleKind,
}

impl Rule {
    fn allows(&self, zone: &str) -> bool {
        match &self.kind {
            RuleKind::Terms(terms) => terms.iter().any(|t| {
                t.iter().all(|(k, v)| match k.as_str() {
                    k if is_zone_key(k) => v == zone,
                    OS_KEY => v == "linux",
                    _ => false,
                })
            }),
            RuleKind::Selector(s) => s.allows(zone),
            RuleKind::Labels(labels) => labels.iter().all(|(k, v)| !is_zone_key(k) || v == zone),
            RuleKind::Zone(z) => z == zone,
        }
    }

    fn named(&self) -> Vec<String> {
        match &self.kind {
            RuleKind::Terms(terms) => terms
                .iter()
                .flat_map(|t| t.iter().filter(|(k, _)| is_zone_key(k)).map(|(_, v)| v.clone()))
                .collect(),
            RuleKind::Selector(s) => s.named(),
            RuleKind::Labels(labels) => labels
                .iter()
                .filter(|(k, _)| is_zone_key(k))
                .map(|(_, v)| v.clone())
                .collect(),
            RuleKind::Zone(z) => vec![z.clone()],
        }
    }

    /// `Kind name (file) field`.
    fn at(&self) -> String {
        format!("{} ({}) {}", self.origin.object, self.origin.file, self.field)
    }
}

/// A pod's own scheduling constraints on zones: its nodeSelector and required node affinity.
pub(super) fn pod_rules(origin: &Origin, base: &str, pod: &PodSpec) -> Vec<Rule> {
    let mut rules = Vec::new();
    if pod.node_selector.keys().any(|k| is_zone_key(k)) {
        rules.push(Rule {
            origin: origin.clone(),
            field: format!("{base}.nodeSelector"),
            pod: origin.object.clone(),
            note: String::new(),
            kind: RuleKind::Labels(pod.node_selector.clone()),
        });
    }
    let required = pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.clone());
    if let Some(selector) = required {
        rules.push(Rule {
            origin: origin.clone(),
            field: format!("{base}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"),
            pod: origin.object.clone(),
            note: String::new(),
            kind: RuleKind::Selector(selector),
        });
    }
    rules
}

/// The zone ids the local backend gives its zones (`lcl1-az1`…), as `LocalCloud::zone_ids`.
fn local_zone_ids(region: &[String]) -> Vec<String> {
    (1..=region.len()).map(|n| format!("lcl1-az{n}")).collect()
}

impl Builder {
    /// The zone the driver makes an Immediate claim's volume in: the provisioner's requirement
    /// for it (allowedTopologies, rotated by the claim's name), resolved as the driver does.
    fn immediate_zone(&self, c: usize, region: &[String]) -> Result<String> {
        let claim = &self.plan.claims[c];
        let (requisite, preferred) = topology_requirement(&claim.allowed, &[], None, &claim.name);
        let topology = |t: &Term| Topology {
            segments: t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let requirement = TopologyRequirement {
            requisite: requisite.iter().map(topology).collect(),
            preferred: preferred.iter().map(topology).collect(),
        };
        let ids = local_zone_ids(region);
        let zones = Zones {
            names: region,
            ids: &ids,
        };
        zones.choose(Some(&requirement), &region[0]).map_err(|_| {
            self.class_of[&c].error(
                "allowedTopologies",
                format!(
                    "names none of the demo's zones ({}), so claim {} cannot be provisioned",
                    region.join(", "),
                    claim.key()
                ),
            )
        })
    }

    /// The constraints the pods' volumes put on the node: a WaitForFirstConsumer class's
    /// allowedTopologies, the zone an Immediate claim's volume is made in, a pre-provisioned
    /// volume's node affinity.
    fn volume_rules(&self, region: &[String]) -> Result<Vec<Rule>> {
        let mut rules = Vec::new();
        let mut done = BTreeSet::new();
        for w in &self.plan.workloads {
            for v in w.pods.iter().flat_map(|p| &p.volumes) {
                if !done.insert(v.claim) {
                    continue;
                }
                let claim = &self.plan.claims[v.claim];
                if let Some(pv) = claim.static_pv {
                    if let Some(selector) = &self.pv_affinity[pv] {
                        rules.push(Rule {
                            origin: self.pv_origins[pv].clone(),
                            field: "spec.nodeAffinity.required".into(),
                            pod: w.key(),
                            note: String::new(),
                            kind: RuleKind::Selector(selector.clone()),
                        });
                    }
                    continue;
                }
                if claim.allowed.is_empty() {
                    continue;
                }
                let origin = self.class_of[&v.claim].clone();
                let (kind, note) = if claim.immediate {
                    let zone = self.immediate_zone(v.claim, region)?;
                    let note = format!(
                        " (Immediate: the provisioner makes claim {}'s volume in {zone} before any pod exists)",
                        claim.key()
                    );
                    (RuleKind::Zone(zone), note)
                } else {
                    (RuleKind::Terms(claim.allowed.clone()), String::new())
                };
                rules.push(Rule {
                    origin,
                    field: "allowedTopologies".into(),
                    pod: w.key(),
                    note,
                    kind,
                });
            }
        }
        Ok(rules)
    }

    /// Decides the region's zones and the node's, and where each pre-provisioned volume is.
    pub(super) fn place(&mut self, node: &DemoNode) -> Result<()> {
        let mut named: BTreeSet<String> = BTreeSet::new();
        for c in &self.plan.claims {
            for t in &c.allowed {
                named.extend(t.iter().filter(|(k, _)| is_zone_key(k)).map(|(_, v)| v.clone()));
            }
        }
        for selector in self.pv_affinity.iter().flatten() {
            named.extend(selector.named());
        }
        for r in &self.pod_rules {
            named.extend(r.named());
        }
        named.remove("");
        let (mut region, from) = if !node.zones.is_empty() {
            (node.zones.clone(), "--zones")
        } else if !named.is_empty() {
            (named.into_iter().collect::<Vec<_>>(), "named in the YAML")
        } else {
            (default_zones(), "")
        };
        if let Some(z) = &node.zone
            && !region.contains(z)
        {
            if !node.zones.is_empty() {
                return Err(ManifestError {
                    file: "--node-zone".into(),
                    object: None,
                    field: None,
                    message: format!("{z} is not one of --zones ({})", region.join(", ")),
                });
            }
            region.push(z.clone());
            region.sort();
        }
        // Every Immediate claim must have a zone to be made in, used by a pod or not.
        for c in 0..self.plan.claims.len() {
            let claim = &self.plan.claims[c];
            if claim.immediate && claim.static_pv.is_none() && !claim.allowed.is_empty() {
                self.immediate_zone(c, &region)?;
            }
        }
        let mut rules = self.volume_rules(&region)?;
        rules.extend(self.pod_rules.iter().cloned());
        let zone = choose_zone(&rules, &region, node)?;
        for v in 0..self.plan.volumes.len() {
            let pv_zone = match &self.pv_affinity[v] {
                Some(s) if !s.allows(&zone) => region.iter().find(|z| s.allows(z)).cloned().ok_or_else(|| {
                    self.pv_origins[v].error(
                        "spec.nodeAffinity.required",
                        format!("allows none of the demo's zones ({})", region.join(", ")),
                    )
                })?,
                _ => zone.clone(),
            };
            self.plan.volumes[v].zone = pv_zone;
        }
        self.plan.zones_note = (!from.is_empty() || node.zone.is_some()).then(|| {
            let why = if node.zone.is_some() {
                "--node-zone".to_owned()
            } else if rules.is_empty() {
                "the first".to_owned()
            } else {
                "the first that every constraint allows".to_owned()
            };
            let from = if from.is_empty() {
                String::new()
            } else {
                format!(" ({from})")
            };
            format!("{}{from}; node {} in {zone} ({why})", region.join(", "), node.name)
        });
        self.plan.node = NodeFacts {
            name: node.name.clone(),
            topology: BTreeMap::from([
                (ZONE_KEY.to_owned(), zone.clone()),
                (WELL_KNOWN_ZONE_KEY.to_owned(), zone),
                (OS_KEY.to_owned(), "linux".to_owned()),
            ]),
        };
        self.plan.zones = region;
        Ok(())
    }
}

/// The node's zone: `--node-zone` if every constraint allows it, else the first zone of the
/// region that every constraint allows.
fn choose_zone(rules: &[Rule], region: &[String], node: &DemoNode) -> Result<String> {
    let mut candidates = region.to_vec();
    let mut narrowed_by: Vec<String> = Vec::new();
    for r in rules {
        let allowed: Vec<String> = region.iter().filter(|z| r.allows(z)).cloned().collect();
        if allowed.is_empty() {
            let given = if node.zones.is_empty() {
                ""
            } else {
                ", given with --zones"
            };
            return Err(r.origin.error(
                &r.field,
                format!(
                    "allows none of the demo's zones ({}{given}){}; {} would never be scheduled",
                    region.join(", "),
                    r.note,
                    r.pod
                ),
            ));
        }
        if let Some(z) = &node.zone {
            if !allowed.contains(z) {
                return Err(r.origin.error(
                    &r.field,
                    format!(
                        "allows only {}{}, not {z}, where --node-zone puts the demo's node; {} would never be scheduled",
                        allowed.join(", "),
                        r.note,
                        r.pod
                    ),
                ));
            }
            continue;
        }
        let next: Vec<String> = candidates.iter().filter(|z| allowed.contains(z)).cloned().collect();
        if next.is_empty() {
            return Err(r.origin.error(
                &r.field,
                format!(
                    "allows only {}{}, while {} allow only {}: no zone meets them all, so {} would never be scheduled",
                    allowed.join(", "),
                    r.note,
                    narrowed_by.join("; "),
                    candidates.join(", "),
                    r.pod
                ),
            ));
        }
        if next.len() < candidates.len() {
            narrowed_by.push(r.at());
        }
        candidates = next;
    }
    Ok(node.zone.clone().unwrap_or_else(|| candidates[0].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Group, SourceFile, plan};

    fn selector(yaml: &str) -> NodeSelector {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn node_selectors_are_read_for_their_zone_requirements_only() {
        let s = selector(
            "nodeSelectorTerms:\n- matchExpressions:\n  - {key: topology.kubernetes.io/zone, operator: NotIn, values: [a]}\n  - {key: disktype, operator: In, values: [ssd]}\n",
        );
        assert!(!s.allows("a") && s.allows("b"), "NotIn; other labels taken as present");
        let any = selector(
            "nodeSelectorTerms:\n- matchExpressions:\n  - {key: kubernetes.io/os, operator: In, values: [linux]}\n",
        );
        assert!(any.allows("a"), "a term with no zone requirement allows every zone");
        assert!(
            !selector("nodeSelectorTerms:\n- {}\n").allows("a"),
            "an empty term matches no node"
        );
        let two = selector(
            "nodeSelectorTerms:\n- matchExpressions:\n  - {key: topology.ebs.csi.aws.com/zone, operator: In, values: [a]}\n- matchExpressions:\n  - {key: topology.kubernetes.io/zone, operator: In, values: [c]}\n",
        );
        assert!(two.allows("a") && two.allows("c") && !two.allows("b"), "terms are ORed");
    }

    fn placed(yaml: &str, node: &DemoNode) -> crate::manifest::Result<crate::manifest::Plan> {
        let group = Group {
            delete: false,
            given: vec!["z.yaml".into()],
            files: vec![SourceFile {
                name: "z.yaml".into(),
                text: yaml.into(),
            }],
        };
        plan(&[group], node)
    }

    const YAML: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: sc}\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: WaitForFirstConsumer\nallowedTopologies:\n- matchLabelExpressions:\n  - {key: topology.kubernetes.io/zone, values: [us-east-2b, us-east-2c]}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: d}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: sc\n  resources: {requests: {storage: 1Gi}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x, volumeMounts: [{name: v, mountPath: /v}]}]\n  volumes: [{name: v, persistentVolumeClaim: {claimName: d}}]\n";

    #[test]
    fn the_region_is_the_zones_named_and_the_node_the_first_allowed() {
        let p = placed(YAML, &DemoNode::named("n")).unwrap();
        assert_eq!(p.zones, ["us-east-2b", "us-east-2c"]);
        assert_eq!(p.node.topology[WELL_KNOWN_ZONE_KEY], "us-east-2b");
        let pinned = YAML.replace(
            "spec:\n  containers",
            "spec:\n  nodeSelector: {topology.kubernetes.io/zone: us-east-2c}\n  containers",
        );
        let p = placed(&pinned, &DemoNode::named("n")).unwrap();
        assert_eq!(p.node.topology[ZONE_KEY], "us-east-2c", "the one zone both allow");
        let flags = DemoNode {
            name: "n".into(),
            zones: vec!["us-east-2a".into(), "us-east-2b".into()],
            zone: Some("us-east-2a".into()),
        };
        let e = placed(YAML, &flags).unwrap_err();
        assert_eq!(
            (e.object.as_deref(), e.field.as_deref()),
            (Some("StorageClass sc"), Some("allowedTopologies"))
        );
        let e = placed(&pinned.replace("us-east-2c}", "us-east-2a}"), &DemoNode::named("n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("spec.nodeSelector"), "{e}");
        assert!(e.message.contains("us-east-2b, us-east-2c"), "{e}");
    }
}
