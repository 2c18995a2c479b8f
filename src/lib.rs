//! ebs-csi: a CSI driver for EBS-style block volumes. One binary runs the controller, the node
//! service or both, over EC2 or over the embedded `local` backend.

pub mod authority;
pub mod bench;
pub mod capability;
pub mod cli;
pub mod client;
pub mod cloud;
pub mod config;
pub mod controller;
pub mod cost;
pub mod csi;
pub mod deadline;
pub mod demo;
pub mod ebs;
pub mod error;
pub mod iam;
pub mod identity;
pub mod inflight;
pub mod manifest;
pub mod metrics;
pub mod node;
pub mod os;
pub mod params;
pub mod progress;
pub mod rpc;
pub mod server;
pub mod topology;
