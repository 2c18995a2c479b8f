//! EBS volume types and the size unit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, shown};

pub const GIB: u64 = 1 << 30;

/// The size used when CreateVolume gives no capacity (the Go driver's `DefaultVolumeSize`).
pub const DEFAULT_SIZE_GIB: u64 = 100;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    Gp2,
    /// The default for new volumes, as in Go and EC2.
    #[default]
    Gp3,
    Io1,
    Io2,
    Sc1,
    St1,
    Standard,
}

impl VolumeType {
    /// In the order of the limits table.
    pub const ALL: [VolumeType; 7] = [
        VolumeType::Gp2,
        VolumeType::Gp3,
        VolumeType::Io1,
        VolumeType::Io2,
        VolumeType::Sc1,
        VolumeType::St1,
        VolumeType::Standard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Gp2 => "gp2",
            VolumeType::Gp3 => "gp3",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::Sc1 => "sc1",
            VolumeType::St1 => "st1",
            VolumeType::Standard => "standard",
        }
    }
}

impl fmt::Display for VolumeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Case-insensitive: `"GP3"` is gp3.
impl FromStr for VolumeType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        VolumeType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let hint = if ["sbp1", "sbg1"].iter().any(|t| t.eq_ignore_ascii_case(s)) {
                    " (sbp1/sbg1 exist only on Snow devices)"
                } else {
                    ""
                };
                Error::InvalidArgument(format!(
                    "volume type {} is not one of gp2, gp3, io1, io2, sc1, st1, standard{hint}",
                    shown(s)
                ))
            })
    }
}
