//! How many EBS volumes an instance type can have attached.
//!
//! From the Amazon EC2 User Guide, "Amazon EBS volume limits for Amazon EC2 instances" (read
//! 2026-11): Nitro instances share 28 attachment slots among network interfaces, EBS volumes
//! and NVMe instance-store volumes (some newer types have a dedicated EBS limit instead); Xen
//! instances support up to 39 EBS volumes on Linux. The root volume takes one slot of either.
//! A type this table does not know gets 27 slots for data volumes, as the Go driver assumes.

/// Xen-based families (everything else current is Nitro).
const XEN_FAMILIES: [&str; 20] = [
    "c1", "c3", "c4", "d2", "g2", "g3", "h1", "i2", "i3", "m1", "m2", "m3", "m4", "p2", "p3", "r3", "r4", "t1", "t2",
    "x1",
];

/// Families whose EBS attachments do not share slots with network interfaces: (family prefix,
/// dedicated EBS volume limit).
const DEDICATED: [(&str, u32); 8] = [
    ("m7i", 128),
    ("c7i", 128),
    ("r7i", 128),
    ("m8g", 128),
    ("c8g", 128),
    ("r8g", 128),
    ("m7a", 128),
    ("c7a", 128),
];

const NITRO_SHARED: u32 = 28;
const XEN_LIMIT: u32 = 39;
const UNKNOWN: u32 = 27;

fn family(instance_type: &str) -> Option<&str> {
    let (family, size) = instance_type.split_once('.')?;
    (!family.is_empty() && !size.is_empty()).then_some(family)
}

/// Data volumes an instance can take: its slots, less the root volume, and on Nitro the network
/// interfaces (`enis`) and NVMe instance-store volumes that share the slots.
pub fn attach_limit(instance_type: &str, enis: u32, instance_store: u32) -> u32 {
    let Some(family) = family(instance_type) else {
        return UNKNOWN;
    };
    if XEN_FAMILIES.contains(&family) {
        return XEN_LIMIT - 1;
    }
    // Metal sizes of Nitro families share slots too.
    if let Some((_, limit)) = DEDICATED.iter().find(|(f, _)| family == *f) {
        return limit - 1;
    }
    if family.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && family.chars().any(|c| c.is_ascii_digit()) {
        return NITRO_SHARED.saturating_sub(1 + enis.max(1) + instance_store);
    }
    UNKNOWN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_by_kind_of_instance() {
        assert_eq!(
            attach_limit("m5.large", 1, 0),
            26,
            "28 shared slots less the root volume and one ENI"
        );
        assert_eq!(attach_limit("m5d.xlarge", 2, 1), 24);
        assert_eq!(attach_limit("m4.large", 1, 0), 38, "Xen: 39 less the root volume");
        assert_eq!(
            attach_limit("m7i.large", 3, 0),
            127,
            "a dedicated EBS limit ignores ENIs"
        );
        assert_eq!(attach_limit("weird", 1, 0), 27);
        assert_eq!(attach_limit("", 1, 0), 27);
    }
}
