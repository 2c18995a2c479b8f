//! What the sidecars and kubelet compute themselves from the objects: the CSI access mode
//! (csi-lib-utils), the provisioner's topology requirement, and Kubernetes-shaped uids.

use std::collections::{BTreeMap, BTreeSet};

use crate::csi::volume_capability::access_mode::Mode;

use super::NodeFacts;

/// Kubernetes access modes → the CSI mode, as csi-lib-utils maps them for the provisioner, the
/// attacher and kubelet alike.
pub fn csi_access_mode(modes: &[String], single_node_multi_writer: bool) -> std::result::Result<Mode, String> {
    let set: BTreeSet<&str> = modes.iter().map(String::as_str).collect();
    if let Some(bad) = set.iter().find(|m| {
        !matches!(
            **m,
            "ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOncePod"
        )
    }) {
        return Err(format!(
            "{bad:?} is not an access mode; use ReadWriteOnce, ReadWriteOncePod, ReadOnlyMany or ReadWriteMany"
        ));
    }
    if set.contains("ReadWriteOncePod") {
        if set.len() > 1 {
            return Err("ReadWriteOncePod cannot be combined with other access modes".into());
        }
        return Ok(if single_node_multi_writer {
            Mode::SingleNodeSingleWriter
        } else {
            Mode::SingleNodeWriter
        });
    }
    if set.contains("ReadWriteMany") {
        return Ok(Mode::MultiNodeMultiWriter);
    }
    if set.contains("ReadOnlyMany") && set.contains("ReadWriteOnce") {
        return Err("CSI has no mode for ReadOnlyMany together with ReadWriteOnce".into());
    }
    if set.contains("ReadOnlyMany") {
        return Ok(Mode::MultiNodeReaderOnly);
    }
    if set.contains("ReadWriteOnce") {
        return Ok(if single_node_multi_writer {
            Mode::SingleNodeMultiWriter
        } else {
            Mode::SingleNodeWriter
        });
    }
    Err("at least one access mode is required".into())
}

/// A fresh uid, shaped as Kubernetes' (version 4).
pub fn uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// FNV-1a, 32 bits: the hash the provisioner spreads Immediate volumes over zones with.
fn fnv1a(text: &str) -> u32 {
    text.bytes()
        .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A topology term: segments that must all match.
pub type Term = BTreeMap<String, String>;

/// The external-provisioner's topology requirement. `requisite`: the StorageClass's
/// allowedTopologies (`allowed`), else the topology of every registered node, sorted and without
/// repeats. `preferred`: the requisite terms rotated to start at the selected node's term
/// (WaitForFirstConsumer), or by a hash of the PVC name (Immediate, to spread volumes).
pub fn topology_requirement(
    allowed: &[Term],
    nodes: &[NodeFacts],
    selected: Option<&NodeFacts>,
    pvc_name: &str,
) -> (Vec<Term>, Vec<Term>) {
    let mut requisite: Vec<BTreeMap<String, String>> = if allowed.is_empty() {
        nodes.iter().map(|n| n.topology.clone()).collect()
    } else {
        allowed.to_vec()
    };
    requisite.sort();
    requisite.dedup();
    if requisite.is_empty() {
        return (requisite, Vec::new());
    }
    let start = match selected {
        Some(node) => requisite
            .iter()
            .position(|t| t.iter().all(|(k, v)| node.topology.get(k) == Some(v)))
            .unwrap_or(0),
        None => fnv1a(pvc_name) as usize % requisite.len(),
    };
    let mut preferred = requisite.clone();
    preferred.rotate_left(start);
    (requisite, preferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes_map_as_csi_lib_utils_does() {
        let m = |v: &[&str], snmw| csi_access_mode(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), snmw);
        assert_eq!(m(&["ReadWriteOnce"], false), Ok(Mode::SingleNodeWriter));
        assert_eq!(m(&["ReadWriteOnce"], true), Ok(Mode::SingleNodeMultiWriter));
        assert_eq!(m(&["ReadWriteOncePod"], true), Ok(Mode::SingleNodeSingleWriter));
        assert_eq!(m(&["ReadWriteOncePod"], false), Ok(Mode::SingleNodeWriter));
        assert_eq!(m(&["ReadOnlyMany"], true), Ok(Mode::MultiNodeReaderOnly));
        assert_eq!(
            m(&["ReadWriteMany", "ReadWriteOnce"], true),
            Ok(Mode::MultiNodeMultiWriter)
        );
        assert!(m(&["ReadOnlyMany", "ReadWriteOnce"], true).is_err());
        assert!(m(&["ReadWriteOncePod", "ReadWriteOnce"], true).is_err());
        assert!(m(&[], true).is_err());
    }

    #[test]
    fn immediate_preferred_is_the_requisite_rotated() {
        let zone = |z: &str| NodeFacts {
            name: z.into(),
            topology: BTreeMap::from([("topology.kubernetes.io/zone".to_owned(), z.to_owned())]),
        };
        let nodes = [zone("b"), zone("a"), zone("a")];
        let (req, pref) = topology_requirement(&[], &nodes, Some(&nodes[0]), "x");
        assert_eq!(req.len(), 2, "sorted, without repeats");
        assert_eq!(req[0]["topology.kubernetes.io/zone"], "a");
        assert_eq!(
            pref[0]["topology.kubernetes.io/zone"], "b",
            "the selected node's zone first"
        );
        let (_, pref) = topology_requirement(&[], &nodes, None, "x");
        assert_eq!(pref.len(), 2);
    }
}
