//! The Identity service's calls.

use std::fmt::Write;

use clap::Subcommand;
use serde_json::json;
use tonic::transport::Channel;

use super::Failure;
use super::output::{Printed, sorted};
use super::show::pairs;
use crate::csi::identity_client::IdentityClient;
use crate::csi::plugin_capability::{Type as CapType, service, volume_expansion};
use crate::csi::*;

#[derive(Subcommand)]
pub enum Call {
    /// GetPluginInfo and Probe together.
    Info,
    /// GetPluginInfo: the driver's name and version.
    GetPluginInfo,
    /// GetPluginCapabilities: the services and features the driver offers.
    GetPluginCapabilities,
    /// Probe: whether the driver is ready.
    Probe,
}

pub async fn call(channel: Channel, call: Call) -> Result<Printed, Failure> {
    let mut c = IdentityClient::new(channel);
    Ok(match call {
        Call::Info => {
            let info = c.get_plugin_info(GetPluginInfoRequest {}).await?.into_inner();
            let probe = c.probe(ProbeRequest {}).await?.into_inner();
            let (i, p) = (plugin_info(&info), probe_printed(&probe));
            Printed::new(
                json!({ "plugin_info": i.json, "probe": p.json }),
                format!("{}{}", i.human, p.human),
            )
        }
        Call::GetPluginInfo => plugin_info(&c.get_plugin_info(GetPluginInfoRequest {}).await?.into_inner()),
        Call::Probe => probe_printed(&c.probe(ProbeRequest {}).await?.into_inner()),
        Call::GetPluginCapabilities => {
            let r = c
                .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
                .await?
                .into_inner();
            let mut human = String::new();
            let mut caps = Vec::new();
            for cap in &r.capabilities {
                match &cap.r#type {
                    Some(CapType::Service(s)) => {
                        let name = service::Type::try_from(s.r#type)
                            .map(|t| t.as_str_name().to_owned())
                            .unwrap_or_else(|_| s.r#type.to_string());
                        let _ = writeln!(human, "service: {name}");
                        caps.push(json!({ "service": { "type": name } }));
                    }
                    Some(CapType::VolumeExpansion(e)) => {
                        let name = volume_expansion::Type::try_from(e.r#type)
                            .map(|t| t.as_str_name().to_owned())
                            .unwrap_or_else(|_| e.r#type.to_string());
                        let _ = writeln!(human, "volume expansion: {name}");
                        caps.push(json!({ "volume_expansion": { "type": name } }));
                    }
                    None => {}
                }
            }
            Printed::new(json!({ "capabilities": caps }), human)
        }
    })
}

fn plugin_info(info: &GetPluginInfoResponse) -> Printed {
    let mut human = format!("{} {}\n", info.name, info.vendor_version);
    if !info.manifest.is_empty() {
        let _ = writeln!(human, "  manifest: {}", pairs(&info.manifest));
    }
    Printed::new(
        json!({
            "name": info.name,
            "vendor_version": info.vendor_version,
            "manifest": sorted(&info.manifest),
        }),
        human,
    )
}

fn probe_printed(p: &ProbeResponse) -> Printed {
    let human = match p.ready {
        Some(true) => "ready\n",
        Some(false) => "not ready\n",
        // CSI: a plugin that leaves `ready` unset is ready.
        None => "ready (not reported)\n",
    };
    Printed::new(json!({ "ready": p.ready }), human.into())
}
