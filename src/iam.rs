//! `ebs-csi iam …`: the IAM documents the controller needs on AWS, replacing the seed's
//! hand-edited JSON and `sed` steps. The policy allows exactly the EC2 calls the driver makes
//! (a test checks that against the code), scoped by the tags the driver puts on what it creates.

use serde_json::{Value, json};

/// Calls that read, and cannot be scoped to resources.
pub const DESCRIBE_ACTIONS: [&str; 7] = [
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstances",
    "ec2:DescribeLockedSnapshots",
    "ec2:DescribeSnapshots",
    "ec2:DescribeVolumes",
    "ec2:DescribeVolumesModifications",
    // Not called by ebs-csi, but in the seed's policy; harmless and read-only.
    "ec2:DescribeVolumeStatus",
];

/// The wider workflows a cluster may opt into; each adds the narrowest statement it needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Workflows {
    /// Static provisioning: PersistentVolumes naming volumes this driver did not create (and so
    /// did not tag) must attach and detach.
    pub static_volumes: bool,
    /// Snapshot import: volumes restored from snapshots made elsewhere (AWS Backup, another
    /// cluster, a person), which carry no tag of ours.
    pub snapshot_import: bool,
}

/// The flag of `ebs-csi iam policy` that allows attaching volumes the driver did not create.
pub const STATIC_VOLUMES_FLAG: &str = "--allow-static-volumes";
/// The flag that allows restoring from snapshots the driver did not create.
pub const SNAPSHOT_IMPORT_FLAG: &str = "--allow-snapshot-import";

const CLUSTER_TAG: &str = "aws:ResourceTag/ebs.csi.aws.com/cluster";
const VOLUMES: &str = "arn:aws:ec2:*:*:volume/*";
const SNAPSHOTS: &str = "arn:aws:ec2:*:*:snapshot/*";
const INSTANCES: &str = "arn:aws:ec2:*:*:instance/*";

/// One statement of the policy, with the workflow that needs it.
struct Statement {
    sid: &'static str,
    actions: &'static [&'static str],
    resources: &'static [&'static str],
    condition: Option<Value>,
    why: &'static str,
}

fn statements(w: Workflows) -> Vec<Statement> {
    let tagged = || Some(json!({ "StringEquals": { CLUSTER_TAG: "true" } }));
    let mut out = vec![
        Statement {
            sid: "Describe",
            actions: &DESCRIBE_ACTIONS,
            resources: &["*"],
            condition: None,
            why: "every workflow: reading volumes, snapshots and their locks, instances and modifications (EC2 cannot scope reads)",
        },
        Statement {
            sid: "CreateOnlyTagged",
            actions: &["ec2:CreateVolume", "ec2:CreateSnapshot", "ec2:CopyVolumes"],
            resources: &[VOLUMES, SNAPSHOTS],
            condition: Some(json!({ "StringEquals": { "aws:RequestTag/ebs.csi.aws.com/cluster": "true" } })),
            why: "dynamic provisioning and snapshots: the new volume or snapshot must carry the cluster tag",
        },
        Statement {
            sid: "CreateFromSources",
            actions: &["ec2:CreateVolume", "ec2:CreateSnapshot", "ec2:CopyVolumes"],
            resources: &[SNAPSHOTS, VOLUMES],
            condition: tagged(),
            why: "snapshots, restores and clones of volumes and snapshots this driver made",
        },
        Statement {
            sid: "TagOnCreate",
            actions: &["ec2:CreateTags"],
            resources: &[VOLUMES, SNAPSHOTS],
            condition: Some(
                json!({ "StringEquals": { "ec2:CreateAction": ["CreateVolume", "CreateSnapshot", "CopyVolumes"] } }),
            ),
            why: "dynamic provisioning and snapshots: tags set in the same call that creates",
        },
        Statement {
            sid: "ManageOwnVolumes",
            actions: &[
                "ec2:AttachVolume",
                "ec2:DetachVolume",
                "ec2:ModifyVolume",
                "ec2:DeleteVolume",
                "ec2:CreateTags",
            ],
            resources: &[VOLUMES],
            condition: tagged(),
            why: "attach, detach, expand, modify and delete of volumes this driver made",
        },
        Statement {
            sid: "AttachToInstances",
            actions: &["ec2:AttachVolume", "ec2:DetachVolume"],
            resources: &[INSTANCES],
            condition: None,
            why: "attach and detach: the instance side of every attachment",
        },
        Statement {
            sid: "DeleteOwnSnapshots",
            actions: &["ec2:DeleteSnapshot"],
            resources: &[SNAPSHOTS],
            condition: tagged(),
            why: "snapshot deletion, and the temporary snapshot of a clone",
        },
        Statement {
            sid: "ProtectOwnSnapshots",
            actions: &["ec2:LockSnapshot", "ec2:EnableFastSnapshotRestores"],
            resources: &[SNAPSHOTS],
            condition: tagged(),
            why: "VolumeSnapshotClass lockMode and fastSnapshotRestoreAvailabilityZones on snapshots this driver made",
        },
    ];
    if w.static_volumes {
        out.push(Statement {
            sid: "AttachStaticVolumes",
            actions: &["ec2:AttachVolume", "ec2:DetachVolume"],
            resources: &[VOLUMES],
            condition: None,
            why: "static provisioning (--allow-static-volumes): attach and detach volumes made outside this driver",
        });
    }
    if w.snapshot_import {
        out.push(Statement {
            sid: "RestoreImportedSnapshots",
            actions: &["ec2:CreateVolume"],
            resources: &[SNAPSHOTS],
            condition: None,
            why: "snapshot import (--allow-snapshot-import): restore volumes from snapshots made outside this driver",
        });
    }
    out
}

/// The controller's least-privilege policy, widened only for the workflows asked for.
pub fn policy(w: Workflows) -> Value {
    let statements: Vec<Value> = statements(w)
        .into_iter()
        .map(|st| {
            let mut v = json!({
                "Sid": st.sid,
                "Effect": "Allow",
                "Action": st.actions,
                "Resource": if st.resources == ["*"] { json!("*") } else { json!(st.resources) },
            });
            if let Some(c) = st.condition {
                v["Condition"] = c;
            }
            v
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// One line per statement of `policy(w)`: its Sid and the workflow that needs it.
pub fn explain(w: Workflows) -> String {
    statements(w)
        .iter()
        .map(|st| format!("{:<26} {}\n", st.sid, st.why))
        .collect()
}

/// What to tell a user whose call EC2 refused: the action and resource, and the policy flag
/// that allows it when a wider workflow is the reason.
pub fn refusal_hint(action: &str, resource: &str) -> String {
    let action = action.trim_start_matches("ec2:");
    let flag = match action {
        // EC2 may not say which resource it refused; then the flag is named as a possibility.
        "AttachVolume" | "DetachVolume" if resource.is_empty() || resource.contains(":volume/") => Some((
            STATIC_VOLUMES_FLAG,
            "a volume without the ebs.csi.aws.com/cluster=true tag (static provisioning?)",
        )),
        "CreateVolume" if resource.is_empty() || resource.contains(":snapshot/") => Some((
            SNAPSHOT_IMPORT_FLAG,
            "a snapshot without the ebs.csi.aws.com/cluster=true tag (an imported snapshot?)",
        )),
        _ => None,
    };
    let on = if resource.is_empty() {
        String::new()
    } else {
        format!(" on {resource}")
    };
    match flag {
        Some((flag, what)) => format!(
            "the controller's IAM role may not call ec2:{action}{on}: {what}; `ebs-csi iam policy {flag}` allows it"
        ),
        None => format!(
            "the controller's IAM role may not call ec2:{action}{on}; `ebs-csi iam policy` prints the policy it needs"
        ),
    }
}

/// Every EC2 action a policy document allows, without the `ec2:` prefix.
pub fn allowed_actions(policy: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for st in policy["Statement"].as_array().into_iter().flatten() {
        let actions = match &st["Action"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        out.extend(
            actions
                .into_iter()
                .filter_map(|a| a.strip_prefix("ec2:").map(str::to_owned)),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// The IRSA trust policy: the cluster's OIDC provider may assume the role for one service account.
pub fn trust_policy(account: &str, oidc_provider: &str, namespace: &str, service_account: &str) -> Value {
    let provider = oidc_provider.trim_start_matches("https://").trim_end_matches('/');
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": format!("arn:aws:iam::{account}:oidc-provider/{provider}") },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    format!("{provider}:aud"): "sts.amazonaws.com",
                    format!("{provider}:sub"): format!("system:serviceaccount:{namespace}:{service_account}")
                }
            }
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// snake_case SDK method → EC2 action name.
    fn action(method: &str) -> String {
        method.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect()
    }

    #[test]
    fn every_ec2_call_in_the_code_is_allowed() {
        let allowed = allowed_actions(&policy(Workflows::default()));
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cloud/aws");
        let mut called = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            // Every call site: `ec2` (or `.ec2`), then `.operation()` on the same or the next line.
            let flat: String = text.split_whitespace().collect::<Vec<_>>().join("");
            for (i, _) in flat.match_indices("ec2.") {
                // `ec2` itself, not the end of a longer name.
                if flat[..i]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    continue;
                }
                let rest = &flat[i + 4..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                // `ec2.clone()` copies the client; it is no EC2 call.
                if rest[name.len()..].starts_with("()") && !name.is_empty() && name != "clone" {
                    called.push(action(&name));
                }
            }
        }
        called.sort();
        called.dedup();
        assert!(called.len() >= 10, "found only {called:?}: the scan is broken");
        for c in &called {
            assert!(
                allowed.contains(c),
                "the code calls ec2:{c}, which the policy does not allow"
            );
        }
    }

    /// One authorization EC2 makes: an action on one resource, with the resource's tags, the
    /// tags the request sets, and the creating action for CreateTags.
    struct Check {
        action: &'static str,
        resource: &'static str,
        resource_tags: &'static [(&'static str, &'static str)],
        request_tags: &'static [(&'static str, &'static str)],
        create_action: Option<&'static str>,
    }

    const OURS: &[(&str, &str)] = &[("ebs.csi.aws.com/cluster", "true")];
    const NONE: &[(&str, &str)] = &[];

    fn check(
        action: &'static str,
        resource: &'static str,
        resource_tags: &'static [(&'static str, &'static str)],
    ) -> Check {
        Check {
            action,
            resource,
            resource_tags,
            request_tags: NONE,
            create_action: None,
        }
    }

    fn create(action: &'static str, resource: &'static str) -> Check {
        Check {
            request_tags: OURS,
            ..check(action, resource, NONE)
        }
    }

    fn tag_on(create_action: &'static str, resource: &'static str) -> Check {
        Check {
            create_action: Some(create_action),
            request_tags: OURS,
            ..check("ec2:CreateTags", resource, NONE)
        }
    }

    /// `*` matches any run of characters, as in IAM's Action and Resource elements.
    fn glob(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((head, tail)) => {
                text.starts_with(head) && (0..=text.len() - head.len()).any(|i| glob(tail, &text[head.len() + i..]))
            }
        }
    }

    fn strings(v: &Value) -> Vec<&str> {
        match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Allow-only evaluation: some statement matches the action, the resource and every
    /// StringEquals condition (other operators are not used by our policy, and fail the test).
    fn allowed(policy: &Value, c: &Check) -> bool {
        let tag = |tags: &[(&str, &str)], key: &str| tags.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
        policy["Statement"].as_array().unwrap().iter().any(|st| {
            assert_eq!(st["Effect"], "Allow");
            let action = strings(&st["Action"]).iter().any(|a| glob(a, c.action));
            let resource = strings(&st["Resource"]).iter().any(|r| glob(r, c.resource));
            let conditions = match st.get("Condition") {
                None => true,
                Some(cond) => cond.as_object().unwrap().iter().all(|(op, pairs)| {
                    assert_eq!(op, "StringEquals", "the evaluator knows only StringEquals");
                    pairs.as_object().unwrap().iter().all(|(key, want)| {
                        let have = if let Some(k) = key.strip_prefix("aws:ResourceTag/") {
                            tag(c.resource_tags, k)
                        } else if let Some(k) = key.strip_prefix("aws:RequestTag/") {
                            tag(c.request_tags, k)
                        } else if key == "ec2:CreateAction" {
                            c.create_action.map(str::to_owned)
                        } else {
                            panic!("unknown condition key {key}")
                        };
                        have.is_some_and(|h| strings(want).contains(&h.as_str()))
                    })
                }),
            };
            action && resource && conditions
        })
    }

    const VOL: &str = "arn:aws:ec2:us-east-1:111122223333:volume/vol-0123456789abcdef0";
    const SNAP: &str = "arn:aws:ec2:us-east-1:111122223333:snapshot/snap-0123456789abcdef0";
    const NEW_VOL: &str = "arn:aws:ec2:us-east-1:111122223333:volume/*";
    const NEW_SNAP: &str = "arn:aws:ec2:us-east-1:111122223333:snapshot/*";
    const INSTANCE: &str = "arn:aws:ec2:us-east-1:111122223333:instance/i-0123456789abcdef0";

    /// Every workflow the docs describe, as the authorizations its EC2 calls need.
    fn workflows() -> Vec<(&'static str, Vec<Check>)> {
        vec![
            (
                "dynamic provision",
                vec![create("ec2:CreateVolume", NEW_VOL), tag_on("CreateVolume", NEW_VOL)],
            ),
            (
                "attach",
                vec![
                    check("ec2:AttachVolume", VOL, OURS),
                    check("ec2:AttachVolume", INSTANCE, NONE),
                ],
            ),
            (
                "detach",
                vec![
                    check("ec2:DetachVolume", VOL, OURS),
                    check("ec2:DetachVolume", INSTANCE, NONE),
                ],
            ),
            ("expand", vec![check("ec2:ModifyVolume", VOL, OURS)]),
            (
                "modify",
                vec![check("ec2:ModifyVolume", VOL, OURS), check("ec2:CreateTags", VOL, OURS)],
            ),
            (
                "snapshot",
                vec![
                    create("ec2:CreateSnapshot", NEW_SNAP),
                    check("ec2:CreateSnapshot", VOL, OURS),
                    tag_on("CreateSnapshot", NEW_SNAP),
                ],
            ),
            ("snapshot lock", vec![check("ec2:LockSnapshot", SNAP, OURS)]),
            (
                "snapshot fast restores",
                vec![check("ec2:EnableFastSnapshotRestores", SNAP, OURS)],
            ),
            (
                "restore",
                vec![
                    create("ec2:CreateVolume", NEW_VOL),
                    check("ec2:CreateVolume", SNAP, OURS),
                    tag_on("CreateVolume", NEW_VOL),
                ],
            ),
            (
                "clone (CopyVolumes)",
                vec![
                    create("ec2:CopyVolumes", NEW_VOL),
                    check("ec2:CopyVolumes", VOL, OURS),
                    tag_on("CopyVolumes", NEW_VOL),
                ],
            ),
            (
                "clone where EC2 has no CopyVolumes",
                vec![
                    create("ec2:CreateSnapshot", NEW_SNAP),
                    check("ec2:CreateSnapshot", VOL, OURS),
                    create("ec2:CreateVolume", NEW_VOL),
                    check("ec2:CreateVolume", SNAP, OURS),
                    check("ec2:DeleteSnapshot", SNAP, OURS),
                ],
            ),
            (
                "static volume",
                vec![
                    check("ec2:AttachVolume", VOL, NONE),
                    check("ec2:AttachVolume", INSTANCE, NONE),
                    check("ec2:DetachVolume", VOL, NONE),
                    check("ec2:DetachVolume", INSTANCE, NONE),
                ],
            ),
            (
                "snapshot import",
                vec![
                    create("ec2:CreateVolume", NEW_VOL),
                    check("ec2:CreateVolume", SNAP, NONE),
                    tag_on("CreateVolume", NEW_VOL),
                ],
            ),
            (
                "delete",
                vec![
                    check("ec2:DeleteVolume", VOL, OURS),
                    check("ec2:DeleteSnapshot", SNAP, OURS),
                ],
            ),
        ]
    }

    #[test]
    fn each_workflow_is_allowed_exactly_when_its_flag_is_on() {
        for static_volumes in [false, true] {
            for snapshot_import in [false, true] {
                let w = Workflows {
                    static_volumes,
                    snapshot_import,
                };
                let p = policy(w);
                for (workflow, checks) in workflows() {
                    let needs = match workflow {
                        "static volume" => Some(static_volumes),
                        "snapshot import" => Some(snapshot_import),
                        _ => None,
                    };
                    let ok = checks.iter().all(|c| allowed(&p, c));
                    assert_eq!(ok, needs.unwrap_or(true), "{workflow} with {w:?}");
                }
                // Never wider than asked: nothing of someone else's may be deleted or modified.
                for c in [
                    check("ec2:DeleteVolume", VOL, NONE),
                    check("ec2:ModifyVolume", VOL, NONE),
                    check("ec2:DeleteSnapshot", SNAP, NONE),
                    check("ec2:CreateTags", VOL, NONE),
                    check("ec2:CreateSnapshot", VOL, NONE),
                    check("ec2:LockSnapshot", SNAP, NONE),
                    check("ec2:EnableFastSnapshotRestores", SNAP, NONE),
                ] {
                    assert!(!allowed(&p, &c), "{} on an untagged resource with {w:?}", c.action);
                }
            }
        }
    }

    #[test]
    fn explain_names_every_statement_and_its_flag() {
        let all = Workflows {
            static_volumes: true,
            snapshot_import: true,
        };
        let text = explain(all);
        let p = policy(all);
        for st in p["Statement"].as_array().unwrap() {
            assert!(text.contains(st["Sid"].as_str().unwrap()), "{text}");
        }
        assert!(text.contains(STATIC_VOLUMES_FLAG) && text.contains(SNAPSHOT_IMPORT_FLAG));
        assert!(!explain(Workflows::default()).contains("--allow"));
    }

    #[test]
    fn refusals_name_the_action_and_the_flag() {
        let h = refusal_hint("ec2:AttachVolume", VOL);
        assert!(
            h.contains("ec2:AttachVolume") && h.contains(VOL) && h.contains(STATIC_VOLUMES_FLAG),
            "{h}"
        );
        let h = refusal_hint("CreateVolume", SNAP);
        assert!(h.contains(SNAPSHOT_IMPORT_FLAG), "{h}");
        let h = refusal_hint("DeleteVolume", VOL);
        assert!(h.contains("ec2:DeleteVolume") && !h.contains("--allow"), "{h}");
    }

    #[test]
    fn trust_policy_names_the_service_account() {
        let p = trust_policy(
            "111122223333",
            "https://oidc.eks.us-east-1.amazonaws.com/id/ABC",
            "kube-system",
            "ebs-csi-controller-sa",
        );
        let st = &p["Statement"][0];
        assert_eq!(
            st["Principal"]["Federated"],
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
        );
        assert_eq!(
            st["Condition"]["StringEquals"]["oidc.eks.us-east-1.amazonaws.com/id/ABC:sub"],
            "system:serviceaccount:kube-system:ebs-csi-controller-sa"
        );
    }
}
