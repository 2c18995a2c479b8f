//! Choosing a zone from CreateVolume's accessibility requirements, and describing a zone back.

use std::collections::HashMap;

use crate::csi::{Topology, TopologyRequirement};
use crate::error::{Error, Result};

/// The driver's own zone key (what the Go driver's nodes have always reported).
pub const ZONE_KEY: &str = "topology.ebs.csi.aws.com/zone";
/// The Kubernetes well-known zone label.
pub const WELL_KNOWN_ZONE_KEY: &str = "topology.kubernetes.io/zone";
/// The AWS zone id (`use1-az1`), stable across accounts, unlike zone names.
pub const ZONE_ID_KEY: &str = "topology.k8s.aws/zone-id";
pub const OS_KEY: &str = "kubernetes.io/os";

/// A region's zones, with their ids.
pub struct Zones<'a> {
    pub names: &'a [String],
    pub ids: &'a [String],
}

impl Zones<'_> {
    fn by_id(&self, id: &str) -> Option<&String> {
        self.ids.iter().position(|i| i == id).and_then(|n| self.names.get(n))
    }

    /// The zones one topology segment allows: every zone when it names none, none when its zone
    /// keys disagree or name a zone this region does not have.
    fn allowed(&self, segments: &HashMap<String, String>) -> Vec<String> {
        let mut named: Option<&String> = None;
        for (key, value) in segments {
            let zone = match key.as_str() {
                ZONE_KEY | WELL_KNOWN_ZONE_KEY => self.names.iter().find(|z| *z == value),
                ZONE_ID_KEY => self.by_id(value),
                _ => continue,
            };
            match (zone, named) {
                (None, _) => return Vec::new(),
                (Some(z), Some(prev)) if z != prev => return Vec::new(),
                (Some(z), _) => named = Some(z),
            }
        }
        match named {
            Some(z) => vec![z.clone()],
            None => self.names.to_vec(),
        }
    }

    /// The zone for a new volume: the first preferred one that is also requisite, else the first
    /// requisite one, else `fallback`.
    pub fn choose(&self, req: Option<&TopologyRequirement>, fallback: &str) -> Result<String> {
        let Some(req) = req.filter(|r| !r.requisite.is_empty() || !r.preferred.is_empty()) else {
            return Ok(fallback.to_owned());
        };
        let requisite: Option<Vec<String>> =
            (!req.requisite.is_empty()).then(|| req.requisite.iter().flat_map(|t| self.allowed(&t.segments)).collect());
        let permitted = |z: &String| requisite.as_ref().is_none_or(|r| r.contains(z));
        for t in &req.preferred {
            if let Some(z) = self.allowed(&t.segments).into_iter().find(|z| permitted(z)) {
                return Ok(z);
            }
        }
        if let Some(z) = requisite.as_ref().and_then(|r| r.first()) {
            return Ok(z.clone());
        }
        Err(Error::ResourceExhausted(format!(
            "no zone of this region ({}) satisfies the accessibility requirements {:?}; \
             the requested zones must be among the region's",
            self.names.join(", "),
            req.requisite
                .iter()
                .chain(&req.preferred)
                .map(|t| &t.segments)
                .collect::<Vec<_>>()
        )))
    }

    /// Whether an existing volume's zone still satisfies the requirements (a repeated create).
    pub fn satisfies(&self, req: Option<&TopologyRequirement>, zone: &str) -> bool {
        match req {
            Some(r) if !r.requisite.is_empty() => r
                .requisite
                .iter()
                .any(|t| self.allowed(&t.segments).iter().any(|z| z == zone)),
            _ => true,
        }
    }

    /// The segments a volume in `zone` is reachable from: the zone under both zone keys every
    /// node reports. The zone id is left out: a segment's keys must all match a node's labels,
    /// and nodes set up before zone ids existed lack that label.
    pub fn describe(&self, zone: &str) -> Topology {
        let segments = HashMap::from([
            (ZONE_KEY.to_owned(), zone.to_owned()),
            (WELL_KNOWN_ZONE_KEY.to_owned(), zone.to_owned()),
        ]);
        Topology { segments }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(pairs: &[(&str, &str)]) -> Topology {
        Topology {
            segments: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn zones() -> (Vec<String>, Vec<String>) {
        (
            vec!["z-a".into(), "z-b".into(), "z-c".into()],
            vec!["id-1".into(), "id-2".into(), "id-3".into()],
        )
    }

    #[test]
    fn preferred_wins_when_requisite_allows_it() {
        let (names, ids) = zones();
        let z = Zones {
            names: &names,
            ids: &ids,
        };
        let req = TopologyRequirement {
            requisite: vec![topo(&[(WELL_KNOWN_ZONE_KEY, "z-a")]), topo(&[(ZONE_KEY, "z-b")])],
            preferred: vec![topo(&[(ZONE_KEY, "z-c")]), topo(&[(ZONE_ID_KEY, "id-2")])],
        };
        assert_eq!(z.choose(Some(&req), "z-a").unwrap(), "z-b");
    }

    #[test]
    fn unknown_or_conflicting_zones_cannot_be_satisfied() {
        let (names, ids) = zones();
        let z = Zones {
            names: &names,
            ids: &ids,
        };
        let req = TopologyRequirement {
            requisite: vec![
                topo(&[(ZONE_KEY, "mars-1a")]),
                topo(&[(ZONE_KEY, "z-a"), (WELL_KNOWN_ZONE_KEY, "z-b")]),
            ],
            preferred: vec![],
        };
        let err = z.choose(Some(&req), "z-a").unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    }

    #[test]
    fn segments_without_a_zone_allow_any_zone() {
        let (names, ids) = zones();
        let z = Zones {
            names: &names,
            ids: &ids,
        };
        let req = TopologyRequirement {
            requisite: vec![topo(&[(OS_KEY, "linux")])],
            preferred: vec![],
        };
        assert_eq!(z.choose(Some(&req), "z-c").unwrap(), "z-a");
        assert_eq!(z.choose(None, "z-c").unwrap(), "z-c");
    }
}
