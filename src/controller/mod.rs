//! The CSI Controller service: each call parsed into the EBS domain's types ([`crate::params`],
//! [`crate::ebs`]), checked against its rules, then asked of the cloud and answered. Never
//! touches the OS. One file per group of calls; `grpc` is the service's gRPC face.

mod grpc;
mod inspect;
mod modify;
mod publish;
mod snapshots;
mod volumes;

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info;

use crate::capability::{check_capabilities, check_capability};
use crate::cloud::{Cloud, Modification, Snapshot, SnapshotFilter, Tags, Volume, VolumeSource, VolumeSpec};
use crate::csi::controller_server::Controller;
use crate::csi::controller_service_capability::{Rpc, rpc::Type as RpcType};
use crate::csi::volume_capability::AccessType;
use crate::csi::{self, *};
use crate::ebs::{self, CLUSTER_TAG, CreateParams, GIB, ModifyParams, SNAPSHOT_NAME_TAG, VOLUME_NAME_TAG, VolumeType};
use crate::error::{Error, Result};
use crate::inflight::InFlight;
use crate::params;
use crate::rpc::{require, traced};
use crate::topology::Zones;

/// What the controller adds to every object it creates.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub extra_tags: Tags,
    pub cluster_id: Option<String>,
}

pub struct ControllerService {
    cloud: Arc<dyn Cloud>,
    inflight: InFlight,
    opts: Options,
}

/// EC2's limit on a tag value, which the volume name becomes.
const MAX_NAME_LEN: usize = 256;

fn bytes(gib: u64) -> i64 {
    i64::try_from(gib.saturating_mul(GIB)).unwrap_or(i64::MAX)
}

/// A paging token as the cloud takes it: none when empty. The cloud checks it is one of its own.
fn start_token(token: &str) -> Option<&str> {
    (!token.is_empty()).then_some(token)
}

fn max_entries(n: i32) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::InvalidArgument(format!("max_entries {n} is negative")))
}

impl ControllerService {
    pub fn new(cloud: Arc<dyn Cloud>, opts: Options) -> Self {
        ControllerService {
            cloud,
            inflight: InFlight::default(),
            opts,
        }
    }

    fn zones<R>(&self, f: impl FnOnce(&Zones) -> R) -> R {
        let (names, ids) = (self.cloud.zones(), self.cloud.zone_ids());
        f(&Zones {
            names: &names,
            ids: &ids,
        })
    }
}
