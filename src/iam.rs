//! `ebs-csi iam …`: the IAM documents the controller needs on AWS, replacing the seed's
//! hand-edited JSON and `sed` steps. The policy allows exactly the EC2 calls the driver makes
//! (a test checks that against the code), scoped by the tags the driver puts on what it creates.

use serde_json::{Value, json};

/// Calls that read, and cannot be scoped to resources.
pub const DESCRIBE_ACTIONS: [&str; 6] = [
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstances",
    "ec2:DescribeSnapshots",
    "ec2:DescribeVolumes",
    "ec2:DescribeVolumesModifications",
    // Not called by ebs-csi, but in the seed's policy; harmless and read-only.
    "ec2:DescribeVolumeStatus",
];

/// The controller's least-privilege policy.
pub fn policy() -> Value {
    let cluster_tag = "aws:ResourceTag/ebs.csi.aws.com/cluster";
    json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "Describe", "Effect": "Allow", "Action": DESCRIBE_ACTIONS, "Resource": "*" },
            {
                "Sid": "CreateOnlyTagged",
                "Effect": "Allow",
                "Action": ["ec2:CreateVolume", "ec2:CreateSnapshot"],
                "Resource": ["arn:aws:ec2:*:*:volume/*", "arn:aws:ec2:*:*:snapshot/*"],
                "Condition": { "StringEquals": { "aws:RequestTag/ebs.csi.aws.com/cluster": "true" } }
            },
            {
                "Sid": "CreateFromSources",
                "Effect": "Allow",
                "Action": ["ec2:CreateVolume", "ec2:CreateSnapshot"],
                "Resource": ["arn:aws:ec2:*:*:snapshot/*", "arn:aws:ec2:*:*:volume/*"],
                "Condition": { "StringEquals": { cluster_tag: "true" } }
            },
            {
                "Sid": "TagOnCreate",
                "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": ["arn:aws:ec2:*:*:volume/*", "arn:aws:ec2:*:*:snapshot/*"],
                "Condition": { "StringEquals": { "ec2:CreateAction": ["CreateVolume", "CreateSnapshot"] } }
            },
            {
                "Sid": "ManageOwnVolumes",
                "Effect": "Allow",
                "Action": ["ec2:AttachVolume", "ec2:DetachVolume", "ec2:ModifyVolume", "ec2:DeleteVolume", "ec2:CreateTags"],
                "Resource": "arn:aws:ec2:*:*:volume/*",
                "Condition": { "StringEquals": { cluster_tag: "true" } }
            },
            {
                "Sid": "AttachToInstances",
                "Effect": "Allow",
                "Action": ["ec2:AttachVolume", "ec2:DetachVolume"],
                "Resource": "arn:aws:ec2:*:*:instance/*"
            },
            {
                "Sid": "DeleteOwnSnapshots",
                "Effect": "Allow",
                "Action": ["ec2:DeleteSnapshot"],
                "Resource": "arn:aws:ec2:*:*:snapshot/*",
                "Condition": { "StringEquals": { cluster_tag: "true" } }
            }
        ]
    })
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
        let allowed = allowed_actions(&policy());
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
