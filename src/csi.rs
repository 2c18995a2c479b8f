//! The CSI messages and services, generated from proto/csi.proto.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("csi.v1");

pub mod codec;
