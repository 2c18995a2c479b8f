//! The CSI Node service: find the attached device (with proof), format it if blank, mount it at
//! the staging path, bind it into pods; and back. Every host change goes through `crate::os`.

mod asked;
pub mod device;
pub mod ebs_io;
mod grpc;
mod inspect;
mod paths;
pub mod proof;
mod publish;
mod stage;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use self::asked::*;
use self::device::DeviceLocator;
use self::paths::*;
use self::stage::unmount_all;
use crate::capability::check_capability;
use crate::csi::node_server::Node;
use crate::csi::node_service_capability::{Rpc, rpc::Type as RpcType};
use crate::csi::volume_capability::{AccessType, access_mode::Mode};
use crate::csi::*;
use crate::ebs::{self, FsType};
use crate::error::{Error, Result};
use crate::inflight::InFlight;
use crate::os::{blockdev, format, mount, resize, stats};
use crate::params::FSTYPE_KEY;
use crate::rpc::{require, traced};
use crate::topology::{OS_KEY, WELL_KNOWN_ZONE_KEY, ZONE_KEY};

/// Who this node is, as NodeGetInfo reports it.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub id: String,
    pub zone: String,
    pub attach_limit: u32,
}

pub struct NodeService {
    me: NodeIdentity,
    locator: Arc<dyn DeviceLocator>,
    inflight: InFlight,
    legacy_xfs: bool,
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl NodeService {
    pub fn new(me: NodeIdentity, locator: Arc<dyn DeviceLocator>) -> Self {
        NodeService {
            me,
            locator,
            inflight: InFlight::default(),
            legacy_xfs: false,
        }
    }

    /// Formats xfs for kernels before 5.10 (`--legacy-xfs`).
    pub fn with_legacy_xfs(mut self, legacy: bool) -> Self {
        self.legacy_xfs = legacy;
        self
    }

    /// A mount on the backend's store, or on a directory above it, would hide the store from
    /// this driver (and the controller sharing it): every image would seem to vanish.
    fn not_over_store(&self, path: &Path, field: &str) -> Result<()> {
        let Some(store) = self.locator.store() else {
            return Ok(());
        };
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if store.starts_with(path) || store.starts_with(&resolved) {
            return Err(Error::InvalidArgument(format!(
                "{field} {} would cover the driver's store at {}; volumes are never mounted there",
                path.display(),
                store.display()
            )));
        }
        Ok(())
    }

    fn info(&self) -> NodeGetInfoResponse {
        let segments = HashMap::from([
            (ZONE_KEY.to_owned(), self.me.zone.clone()),
            (WELL_KNOWN_ZONE_KEY.to_owned(), self.me.zone.clone()),
            (OS_KEY.to_owned(), "linux".to_owned()),
        ]);
        NodeGetInfoResponse {
            node_id: self.me.id.clone(),
            max_volumes_per_node: i64::from(self.me.attach_limit),
            accessible_topology: Some(Topology { segments }),
        }
    }
}
