//! The CSI messages and services, generated from proto/csi.proto; and in `modify`, the
//! volume-modifier-for-k8s sidecar's service, from proto/modify.proto.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("csi.v1");

pub mod codec;

pub mod modify {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("modify.v1");
}
