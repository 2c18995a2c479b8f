//! `--plan DIR`: the recommended moves as Kubernetes YAML. One VolumeAttributesClass per distinct
//! gp3 target, and per claim a PersistentVolumeClaim naming only `spec.volumeAttributesClassName`
//! (server-side apply sets just that field; `ebs-csi demo -f` reads it the same way). Volumes
//! with no claim tags get a comment instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::report::{Report, Row};
use crate::error::{Error, Result};

pub const FILE: &str = "gp3-plan.yaml";
const DRIVER: &str = "ebs.csi.aws.com";

/// The VolumeAttributesClass for a gp3 target.
pub fn class_name(iops: u32, throughput: u32) -> String {
    format!("gp3-{iops}-{throughput}")
}

/// The objects written, with their fields in the order Kubernetes shows them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Object<'a, S: Serialize> {
    api_version: &'a str,
    kind: &'a str,
    metadata: Metadata<'a>,
    #[serde(flatten)]
    body: S,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClassBody<'a> {
    driver_name: &'a str,
    parameters: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
struct ClaimBody {
    spec: ClaimSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimSpec {
    volume_attributes_class_name: String,
}

fn document(value: &impl Serialize) -> Result<String> {
    serde_yaml_ng::to_string(value).map_err(|e| Error::internal("writing the plan", e))
}

/// The plan's text: the classes, then one document per claim, comments for the rest.
pub fn render(r: &Report) -> Result<String> {
    let moves: Vec<(&Row, u32, u32)> = r
        .volumes
        .iter()
        .filter_map(|row| row.gp3.as_ref().map(|m| (row, m.iops, m.throughput)))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ebs-csi cost: {} volume(s) to move to gp3, saving {} {}/month.\n\
         # Apply with: kubectl apply --server-side --field-manager=ebs-csi-cost -f <this directory>\n\
         # Each claim below names only spec.volumeAttributesClassName; the external-resizer then calls\n\
         # ControllerModifyVolume and EC2 changes the volume in place. VolumeAttributesClass is\n\
         # storage.k8s.io/v1beta1 on Kubernetes 1.31-1.33 (feature gate on) and v1 from 1.34.",
        r.totals.moves,
        r.totals.saving,
        r.prices.first().map_or("USD", |p| p.currency.as_str())
    );
    let classes: std::collections::BTreeSet<(u32, u32)> = moves.iter().map(|(_, i, t)| (*i, *t)).collect();
    for (iops, throughput) in &classes {
        let name = class_name(*iops, *throughput);
        let vac = Object {
            api_version: "storage.k8s.io/v1beta1",
            kind: "VolumeAttributesClass",
            metadata: Metadata {
                name: &name,
                namespace: None,
            },
            body: ClassBody {
                driver_name: DRIVER,
                parameters: BTreeMap::from([
                    ("type", "gp3".to_owned()),
                    ("iops", iops.to_string()),
                    ("throughput", throughput.to_string()),
                ]),
            },
        };
        let _ = write!(out, "---\n{}", document(&vac)?);
    }
    let mut claimed: Vec<&(&Row, u32, u32)> = moves.iter().filter(|(row, ..)| row.claim.is_some()).collect();
    claimed.sort_by(|a, b| a.0.claim.cmp(&b.0.claim));
    for (row, iops, throughput) in claimed {
        let Some(c) = &row.claim else { continue };
        let saving = row.gp3.as_ref().map(|m| m.saving).unwrap_or_default();
        let pvc = Object {
            api_version: "v1",
            kind: "PersistentVolumeClaim",
            metadata: Metadata {
                name: &c.name,
                namespace: Some(&c.namespace),
            },
            body: ClaimBody {
                spec: ClaimSpec {
                    volume_attributes_class_name: class_name(*iops, *throughput),
                },
            },
        };
        let _ = write!(
            out,
            "---\n# {}: {} GiB {}, {} -> {} a month (saves {})\n{}",
            row.volume_id,
            row.size_gib,
            row.volume_type,
            row.monthly,
            row.gp3.as_ref().map(|m| m.monthly).unwrap_or_default(),
            saving,
            document(&pvc)?
        );
    }
    for (row, iops, throughput) in moves.iter().filter(|(row, ..)| row.claim.is_none()) {
        let _ = writeln!(
            out,
            "# {}: {} GiB {} in {} has no PVC tags (the provisioner ran without --extra-create-metadata):\n\
             #   name VolumeAttributesClass {} in its claim's spec.volumeAttributesClassName to move it",
            row.volume_id,
            row.size_gib,
            row.volume_type,
            row.zone,
            class_name(*iops, *throughput)
        );
    }
    Ok(out)
}

/// Writes the plan into `dir` (made if missing); returns the file written.
pub fn write(dir: &Path, r: &Report) -> Result<PathBuf> {
    let text = render(r)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("cannot create {}", dir.display()), e))?;
    let path = dir.join(FILE);
    std::fs::write(&path, text).map_err(|e| Error::internal(format!("cannot write {}", path.display()), e))?;
    Ok(path)
}
