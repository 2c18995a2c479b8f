//! The Kubernetes objects the demo plays, as typed structs: only the fields it reads, the others
//! ignored (the API server would keep them). They are written here rather than taken from
//! k8s-openapi (docs/architecture.md says why). Where YAML lets a user write what Kubernetes
//! refuses, a field keeps what was written (`StringMap`, `Quantity`), so that the checks refuse it
//! with their own message, at the moment they use the field.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

use super::{Origin, Result};

// ---------------------------------------------------------------------------------------------
// What every object has
// ---------------------------------------------------------------------------------------------

/// A document's kind, apiVersion and name: read before its kind is known, so from a document of
/// any kind (keys that are not strings included, which only a kind's own struct refuses).
#[derive(Default)]
pub(super) struct Envelope {
    pub(super) kind: Text,
    pub(super) api_version: Text,
    pub(super) metadata: EnvelopeMeta,
}

impl ByKey for Envelope {
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> std::result::Result<bool, A::Error> {
        match key {
            "kind" => self.kind = map.next_value()?,
            "apiVersion" => self.api_version = map.next_value()?,
            "metadata" => self.metadata = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(ByKeyVisitor(PhantomData))
    }
}

/// A string field, or nothing when it is absent or not a string (then it counts as missing).
#[derive(Default)]
pub(super) struct Text(pub(super) Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Text(Some(s)),
            _ => Text(None),
        })
    }
}

/// `metadata.name` and `metadata.namespace`; a `metadata` that is not a mapping has neither.
#[derive(Default)]
pub(super) struct EnvelopeMeta {
    pub(super) name: Text,
    pub(super) namespace: Text,
}

impl ByKey for EnvelopeMeta {
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> std::result::Result<bool, A::Error> {
        match key {
            "name" => self.name = map.next_value()?,
            "namespace" => self.namespace = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Deserialize<'de> for EnvelopeMeta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        if !value.is_mapping() {
            return Ok(EnvelopeMeta::default());
        }
        value
            .deserialize_map(ByKeyVisitor(PhantomData))
            .map_err(serde::de::Error::custom)
    }
}

/// A struct read from a mapping field by field, by the keys' names; a key that is not a string,
/// or not one of its fields, is passed over.
trait ByKey: Default {
    /// Reads the value of `key` into its field; false when the struct has no such field.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> std::result::Result<bool, A::Error>;
}

struct ByKeyVisitor<T>(PhantomData<T>);

impl<'de, T: ByKey> Visitor<'de> for ByKeyVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<T, A::Error> {
        let mut out = T::default();
        while let Some(key) = map.next_key::<Value>()? {
            let read = match key.as_str() {
                Some(k) => out.read(k, &mut map)?,
                None => false,
            };
            if !read {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct Meta {
    pub(super) name: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) annotations: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// Fields YAML reads more loosely than Kubernetes
// ---------------------------------------------------------------------------------------------

/// A `map[string]string` field (StorageClass and class parameters, volume attributes) as written:
/// Kubernetes refuses any value that is not a string, where YAML happily reads `iops: 3000` as a
/// number.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(transparent)]
pub(super) struct StringMap(BTreeMap<String, Scalar>);

/// One value of a [`StringMap`]: a string, or whatever else YAML made of it.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Str(String),
    Other(Value),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Scalar::Str(s),
            other => Scalar::Other(other),
        })
    }
}

impl StringMap {
    /// The map, refused at `field.key` when a value is not a string.
    pub(super) fn strings(&self, origin: &Origin, field: &str) -> Result<BTreeMap<String, String>> {
        self.0
            .iter()
            .map(|(k, v)| match v {
                Scalar::Str(s) => Ok((k.clone(), s.clone())),
                Scalar::Other(other) => Err(origin.error(
                    &format!("{field}.{k}"),
                    format!(
                        "is {}, but Kubernetes takes only strings here: quote it",
                        serde_yaml_ng::to_string(other).unwrap_or_default().trim()
                    ),
                )),
            })
            .collect()
    }
}

/// A quantity as written (`10Gi`, or a bare number), read by [`Quantity::bytes`].
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Quantity {
    Text(String),
    Number(serde_yaml_ng::Number),
    Other(Value),
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Quantity::Text(s),
            Value::Number(n) => Quantity::Number(n),
            other => Quantity::Other(other),
        })
    }
}

impl Quantity {
    /// The size in bytes, and as written; a volume's size cannot be zero.
    pub(super) fn bytes(&self) -> std::result::Result<(i64, String), String> {
        let text = match self {
            Quantity::Text(s) => s.clone(),
            Quantity::Number(n) => n.to_string(),
            Quantity::Other(other) => return Err(format!("{other:?} is not a quantity")),
        };
        let bytes = parse_quantity(&text)?;
        let bytes = i64::try_from(bytes).map_err(|_| format!("{text} is too large"))?;
        if bytes == 0 {
            return Err(format!("{text} is zero; a volume needs a size"));
        }
        Ok((bytes, text))
    }
}

/// A Kubernetes quantity (`10Gi`, `500M`, `1.5Ti`, `1e9`, `1073741824`) in bytes, rounded up.
pub fn parse_quantity(text: &str) -> std::result::Result<u128, String> {
    let bad = || {
        format!(
            "{text:?} is not a quantity: a number with an optional suffix (Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E)"
        )
    };
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || !whole.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    // mantissa / 10^scale, exactly.
    let digits = format!("{whole}{frac}");
    let mantissa: u128 = digits.parse().map_err(|_| bad())?;
    let mut scale = u32::try_from(frac.len()).map_err(|_| bad())?;
    let (mult, extra_scale): (u128, u32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "m" => (1, 3),
        "k" => (1_000, 0),
        "M" => (1_000_000, 0),
        "G" => (1_000_000_000, 0),
        "T" => (1_000_000_000_000, 0),
        "P" => (1_000_000_000_000_000, 0),
        "E" => (1_000_000_000_000_000_000, 0),
        e if e.starts_with(['e', 'E']) => {
            let exp: u32 = e[1..].parse().map_err(|_| bad())?;
            if exp > 30 {
                return Err(bad());
            }
            (10u128.pow(exp), 0)
        }
        _ => return Err(bad()),
    };
    scale += extra_scale;
    if scale > 30 {
        return Err(bad());
    }
    let num = mantissa.checked_mul(mult).ok_or_else(bad)?;
    Ok(num.div_ceil(10u128.pow(scale)))
}

// ---------------------------------------------------------------------------------------------
// The kinds
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct StorageClassDoc {
    #[serde(default)]
    pub(super) metadata: Meta,
    pub(super) provisioner: Option<String>,
    #[serde(default)]
    pub(super) parameters: StringMap,
    pub(super) volume_binding_mode: Option<String>,
    pub(super) allow_volume_expansion: Option<bool>,
    pub(super) reclaim_policy: Option<String>,
    #[serde(default)]
    pub(super) mount_options: Vec<String>,
    #[serde(default)]
    pub(super) allowed_topologies: Vec<TopologySelectorTerm>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct TopologySelectorTerm {
    pub(super) match_label_expressions: Vec<TopologyRequirementDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct TopologyRequirementDoc {
    pub(super) key: String,
    pub(super) values: Vec<String>,
}

#[derive(Deserialize, Debug)]
pub(super) struct PvcDoc {
    pub(super) spec: Option<PvcSpec>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PvcSpec {
    pub(super) access_modes: Vec<String>,
    pub(super) resources: Resources,
    pub(super) storage_class_name: Option<String>,
    pub(super) volume_mode: Option<String>,
    pub(super) data_source: Option<TypedRef>,
    pub(super) data_source_ref: Option<TypedRef>,
    pub(super) volume_attributes_class_name: Option<String>,
    pub(super) volume_name: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(default)]
pub(super) struct Resources {
    pub(super) requests: BTreeMap<String, Quantity>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct TypedRef {
    pub(super) api_group: Option<String>,
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
}

#[derive(Deserialize, Debug)]
pub(super) struct DeploymentDoc {
    pub(super) spec: Option<DeploymentSpec>,
}

#[derive(Deserialize, Debug)]
pub(super) struct DeploymentSpec {
    pub(super) replicas: Option<i64>,
    pub(super) template: Option<PodTemplate>,
}

#[derive(Deserialize, Debug)]
pub(super) struct PodTemplate {
    pub(super) spec: Option<PodSpec>,
}

#[derive(Deserialize, Debug)]
pub(super) struct PodDoc {
    pub(super) spec: Option<PodSpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PodSpec {
    pub(super) containers: Vec<Container>,
    pub(super) init_containers: Vec<Container>,
    pub(super) volumes: Vec<PodVolumeDoc>,
    pub(super) node_selector: BTreeMap<String, String>,
    pub(super) affinity: Option<AffinityDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct Container {
    pub(super) name: String,
    pub(super) volume_mounts: Vec<VolumeMountDoc>,
    pub(super) volume_devices: Vec<VolumeDeviceDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct VolumeMountDoc {
    pub(super) name: String,
    pub(super) mount_path: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct VolumeDeviceDoc {
    pub(super) name: String,
    pub(super) device_path: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PodVolumeDoc {
    pub(super) name: String,
    pub(super) persistent_volume_claim: Option<ClaimSourceDoc>,
    pub(super) ephemeral: Option<EphemeralDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct ClaimSourceDoc {
    pub(super) claim_name: String,
    pub(super) read_only: bool,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct SnapshotClassDoc {
    #[serde(default)]
    pub(super) metadata: Meta,
    pub(super) driver: Option<String>,
    pub(super) deletion_policy: Option<String>,
    #[serde(default)]
    pub(super) parameters: StringMap,
}

#[derive(Deserialize, Debug)]
pub(super) struct SnapshotDoc {
    pub(super) spec: Option<SnapshotSpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct SnapshotSpec {
    pub(super) volume_snapshot_class_name: Option<String>,
    pub(super) source: SnapshotSourceDoc,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct SnapshotSourceDoc {
    pub(super) persistent_volume_claim_name: Option<String>,
    pub(super) volume_snapshot_content_name: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct AttributesClassDoc {
    pub(super) driver_name: Option<String>,
    #[serde(default)]
    pub(super) parameters: StringMap,
}

#[derive(Deserialize, Debug)]
pub(super) struct PvDoc {
    pub(super) spec: Option<PvSpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PvSpec {
    pub(super) capacity: BTreeMap<String, Quantity>,
    pub(super) access_modes: Vec<String>,
    pub(super) volume_mode: Option<String>,
    pub(super) storage_class_name: Option<String>,
    pub(super) persistent_volume_reclaim_policy: Option<String>,
    pub(super) mount_options: Vec<String>,
    pub(super) csi: Option<CsiSourceDoc>,
    pub(super) node_affinity: Option<NodeAffinityDoc>,
    pub(super) claim_ref: Option<ObjectRefDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct CsiSourceDoc {
    pub(super) driver: String,
    pub(super) volume_handle: String,
    pub(super) fs_type: Option<String>,
    pub(super) volume_attributes: StringMap,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(super) struct NodeAffinityDoc {
    pub(super) required: Option<NodeSelector>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(super) struct ObjectRefDoc {
    pub(super) name: Option<String>,
    pub(super) namespace: Option<String>,
}

#[derive(Deserialize, Debug)]
pub(super) struct ContentDoc {
    pub(super) spec: Option<ContentSpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct ContentSpec {
    pub(super) deletion_policy: Option<String>,
    pub(super) driver: Option<String>,
    pub(super) source: ContentSourceDoc,
    pub(super) volume_snapshot_ref: Option<ObjectRefDoc>,
    pub(super) source_volume_mode: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct ContentSourceDoc {
    pub(super) snapshot_handle: Option<String>,
    pub(super) volume_handle: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct AffinityDoc {
    pub(super) node_affinity: Option<PodNodeAffinityDoc>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PodNodeAffinityDoc {
    pub(super) required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
}

/// A node selector (`nodeSelectorTerms`): any term must match.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct NodeSelector {
    pub(super) node_selector_terms: Vec<SelectorTerm>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct SelectorTerm {
    pub(super) match_expressions: Vec<Requirement>,
    pub(super) match_fields: Vec<Requirement>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub(super) struct Requirement {
    pub(super) key: String,
    pub(super) operator: String,
    pub(super) values: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct EphemeralDoc {
    pub(super) volume_claim_template: Option<ClaimTemplateDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(super) struct ClaimTemplateDoc {
    pub(super) spec: Option<PvcSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_quantity("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_quantity("500M").unwrap(), 500_000_000);
        assert_eq!(parse_quantity("1e9").unwrap(), 1_000_000_000);
        assert_eq!(parse_quantity("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_quantity("1500m").unwrap(), 2);
        for bad in ["", "Gi", "10GB", "-1Gi", "1.2.3", "ten"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
