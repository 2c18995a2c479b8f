//! Reading: files and directories → YAML documents → typed objects. Errors name the file, the
//! object (`Kind namespace/name`, or the document's number before its name is known) and the
//! field's path.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::kinds::{
    AttributesClassDoc, ContentDoc, ContentSpec, DeploymentDoc, Envelope, PodDoc, PodSpec, PvDoc, PvSpec, PvcDoc,
    PvcSpec, SnapshotClassDoc, SnapshotDoc, SnapshotSpec, StorageClassDoc,
};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// YAML the demo cannot honour: which file, which object, which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    /// `Kind namespace/name`, when the document got that far.
    pub object: Option<String>,
    /// The field's path in the object, as `kubectl explain` spells it.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

pub(super) type Result<T> = std::result::Result<T, ManifestError>;

/// Where a document came from, for messages.
#[derive(Clone, Debug)]
pub(super) struct Origin {
    pub(super) file: String,
    pub(super) object: String,
}

impl Origin {
    pub(super) fn error(&self, field: &str, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.clone(),
            object: Some(self.object.clone()),
            field: (!field.is_empty()).then(|| field.to_owned()),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading files
// ---------------------------------------------------------------------------------------------

/// One YAML file's name (as shown in messages) and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Reads the files named, a directory meaning its `*.yaml`, `*.yml` and `*.json` files (not
/// its subdirectories), in name order as `kubectl apply -f` takes them.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>> {
    let unreadable = |p: &Path, e: std::io::Error| ManifestError {
        file: p.display().to_string(),
        object: None,
        field: None,
        message: format!("cannot read it: {e}"),
    };
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| unreadable(path, e))?;
        let mut files = if meta.is_dir() {
            let mut list = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| unreadable(path, e))? {
                let p = entry.map_err(|e| unreadable(path, e))?.path();
                let yaml = p
                    .extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
                if yaml && p.is_file() {
                    list.push(p);
                }
            }
            if list.is_empty() {
                return Err(ManifestError {
                    file: path.display().to_string(),
                    object: None,
                    field: None,
                    message: "the directory holds no .yaml, .yml or .json file".into(),
                });
            }
            list.sort();
            list
        } else {
            vec![path.clone()]
        };
        for p in files.drain(..) {
            let text = std::fs::read_to_string(&p).map_err(|e| unreadable(&p, e))?;
            out.push(SourceFile {
                name: p.display().to_string(),
                text,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------------

/// The kinds the demo plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Namespace,
    StorageClass,
    PersistentVolumeClaim,
    Deployment,
    Pod,
    VolumeSnapshotClass,
    VolumeSnapshot,
    VolumeAttributesClass,
    PersistentVolume,
    VolumeSnapshotContent,
}

impl Kind {
    fn from_name(kind: &str) -> Option<Kind> {
        Some(match kind {
            "Namespace" => Kind::Namespace,
            "StorageClass" => Kind::StorageClass,
            "PersistentVolumeClaim" => Kind::PersistentVolumeClaim,
            "Deployment" => Kind::Deployment,
            "Pod" => Kind::Pod,
            "VolumeSnapshotClass" => Kind::VolumeSnapshotClass,
            "VolumeSnapshot" => Kind::VolumeSnapshot,
            "VolumeAttributesClass" => Kind::VolumeAttributesClass,
            "PersistentVolume" => Kind::PersistentVolume,
            "VolumeSnapshotContent" => Kind::VolumeSnapshotContent,
            _ => return None,
        })
    }

    /// The API versions served for it.
    pub(super) fn served_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace | Kind::PersistentVolumeClaim | Kind::Pod | Kind::PersistentVolume => &["v1"],
            Kind::StorageClass => &["storage.k8s.io/v1"],
            Kind::VolumeAttributesClass => &["storage.k8s.io/v1beta1", "storage.k8s.io/v1"],
            Kind::Deployment => &["apps/v1"],
            Kind::VolumeSnapshot | Kind::VolumeSnapshotClass | Kind::VolumeSnapshotContent => {
                &["snapshot.storage.k8s.io/v1"]
            }
        }
    }

    fn cluster_scoped(self) -> bool {
        matches!(
            self,
            Kind::Namespace
                | Kind::StorageClass
                | Kind::VolumeSnapshotClass
                | Kind::VolumeAttributesClass
                | Kind::PersistentVolume
                | Kind::VolumeSnapshotContent
        )
    }
}

/// A document after the first pass: its kind and where it came from.
pub(super) struct Doc {
    pub(super) file: String,
    pub(super) api_version: String,
    pub(super) kind: String,
    /// None for a kind the demo does not play.
    pub(super) known: Option<Kind>,
    pub(super) namespace: Option<String>,
    pub(super) name: String,
}

impl Doc {
    /// `metadata.namespace`, else `default`.
    pub(super) fn namespaced(&self) -> String {
        self.namespace.clone().unwrap_or_else(|| "default".into())
    }

    /// `Kind namespace/name` (`Kind name` for cluster-scoped kinds), as messages name objects.
    pub(super) fn key(&self) -> String {
        if self.known.is_some_and(Kind::cluster_scoped) {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespaced(), self.name)
        }
    }

    pub(super) fn origin(&self) -> Origin {
        Origin {
            file: self.file.clone(),
            object: self.key(),
        }
    }
}

/// Parses every document of every file; syntax errors name the file and the line.
pub(super) fn documents(files: &[SourceFile]) -> Result<Vec<(Doc, Value)>> {
    let mut out = Vec::new();
    for f in files {
        let syntax = |e: serde_yaml_ng::Error| ManifestError {
            file: f.name.clone(),
            object: None,
            field: None,
            message: format!("YAML syntax error: {e}"),
        };
        for (index, de) in serde_yaml_ng::Deserializer::from_str(&f.text).enumerate() {
            let value = Value::deserialize(de).map_err(syntax)?;
            if value.is_null() {
                continue;
            }
            let at = |field: &str, message: String| ManifestError {
                file: f.name.clone(),
                object: Some(format!("document {}", index + 1)),
                field: Some(field.to_owned()),
                message,
            };
            if !value.is_mapping() {
                return Err(at("", "a Kubernetes object must be a mapping".into()));
            }
            let envelope: Envelope = serde_yaml_ng::from_value(value.clone()).map_err(|e| at("", e.to_string()))?;
            let kind = envelope.kind.0.ok_or_else(|| at("kind", "is missing".into()))?;
            let api_version = envelope
                .api_version
                .0
                .ok_or_else(|| at("apiVersion", "is missing".into()))?;
            let name = envelope
                .metadata
                .name
                .0
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ManifestError {
                    file: f.name.clone(),
                    object: Some(format!("{kind} (document {})", index + 1)),
                    field: Some("metadata.name".into()),
                    message: "is missing".into(),
                })?;
            out.push((
                Doc {
                    file: f.name.clone(),
                    api_version,
                    known: Kind::from_name(&kind),
                    kind,
                    namespace: envelope.metadata.namespace.0,
                    name,
                },
                value,
            ));
        }
    }
    Ok(out)
}

/// serde's message starts with the field path when there is one: `spec.replicas: invalid type…`.
fn typed_error(origin: &Origin, e: serde_yaml_ng::Error) -> ManifestError {
    let mut text = e.to_string();
    // The position is in the re-serialized document (see `typed`), not in the user's file.
    if let Some(cut) = text.find(" at line ") {
        text.truncate(cut);
    }
    match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && !path.is_empty() => origin.error(path, rest),
        _ => origin.error("", text),
    }
}

fn typed<T: serde::de::DeserializeOwned>(origin: &Origin, value: Value) -> Result<T> {
    // Round-trip through text so that serde_yaml_ng tracks the path of a mistyped field.
    let text = serde_yaml_ng::to_string(&value).map_err(|e| origin.error("", e.to_string()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| typed_error(origin, e))
}

/// A document of a kind the demo plays, as its typed object.
pub(super) enum Object {
    Namespace,
    StorageClass(StorageClassDoc),
    Claim(PvcSpec),
    /// A Deployment's replicas and pod template's spec.
    Deployment {
        replicas: i64,
        pod: PodSpec,
    },
    Pod(PodSpec),
    SnapshotClass(SnapshotClassDoc),
    Snapshot(SnapshotSpec),
    AttributesClass(AttributesClassDoc),
    Volume(PvSpec),
    Content(ContentSpec),
}

/// Reads a document into its kind's typed object; a field of the wrong type, or a `spec` the
/// kind needs and lacks, is refused here.
pub(super) fn decode(kind: Kind, origin: &Origin, value: Value) -> Result<Object> {
    let spec_missing = || origin.error("spec", "is missing");
    Ok(match kind {
        Kind::Namespace => Object::Namespace,
        Kind::StorageClass => Object::StorageClass(typed(origin, value)?),
        Kind::PersistentVolumeClaim => {
            let d: PvcDoc = typed(origin, value)?;
            Object::Claim(d.spec.ok_or_else(spec_missing)?)
        }
        Kind::Deployment => {
            let d: DeploymentDoc = typed(origin, value)?;
            let spec = d.spec.ok_or_else(spec_missing)?;
            let pod = spec
                .template
                .and_then(|t| t.spec)
                .ok_or_else(|| origin.error("spec.template.spec", "is missing"))?;
            Object::Deployment {
                replicas: spec.replicas.unwrap_or(1),
                pod,
            }
        }
        Kind::Pod => {
            let d: PodDoc = typed(origin, value)?;
            Object::Pod(d.spec.ok_or_else(spec_missing)?)
        }
        Kind::VolumeSnapshotClass => Object::SnapshotClass(typed(origin, value)?),
        Kind::VolumeSnapshot => {
            let d: SnapshotDoc = typed(origin, value)?;
            Object::Snapshot(d.spec.ok_or_else(spec_missing)?)
        }
        Kind::VolumeAttributesClass => Object::AttributesClass(typed(origin, value)?),
        Kind::PersistentVolume => {
            let d: PvDoc = typed(origin, value)?;
            Object::Volume(d.spec.ok_or_else(spec_missing)?)
        }
        Kind::VolumeSnapshotContent => {
            let d: ContentDoc = typed(origin, value)?;
            Object::Content(d.spec.ok_or_else(spec_missing)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{DemoNode, Group, Plan, plan};

    fn plan_of(text: &str) -> Result<Plan> {
        let group = Group {
            delete: false,
            given: vec!["t.yaml".into()],
            files: vec![SourceFile {
                name: "t.yaml".into(),
                text: text.into(),
            }],
        };
        plan(&[group], &DemoNode::named("n"))
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let e = plan_of("apiVersion: v1\nkind: [\n").unwrap_err();
        assert_eq!(e.file, "t.yaml");
        assert!(e.message.contains("YAML syntax error"), "{e}");
    }

    #[test]
    fn mistyped_fields_name_their_path() {
        let e = plan_of(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: s}\nprovisioner: ebs.csi.aws.com\nparameters:\n  iops: 3000\n",
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("parameters.iops"), "{e}");
        assert_eq!(e.object.as_deref(), Some("StorageClass s"));
    }

    #[test]
    fn kinds_not_played_are_skipped_whatever_their_keys() {
        let p = plan_of("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, [a]: b}\n? [a]\n: b\n1: c\n").unwrap();
        assert_eq!(p.phases[0].listed[0].facts, "x: not played by the demo; skipped");
        let e = plan_of("apiVersion: v1\nkind: Pod\nmetadata: 7\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("metadata.name"), "{e}");
    }
}
