"""A few CSI calls from Python's grpcio (grpc-core underneath), for tests/grpc_clients.rs.

Generates the stubs from proto/csi.proto (and proto/modify.proto, the volume-modifier-for-k8s
sidecar's service) into --stubs (unless they are there already), calls the
driver at TARGET and prints what it answered as one JSON object. Any failed call exits non-zero
with the error on stderr.
"""

import argparse
import json
import os
import sys

import grpc
from grpc_tools import protoc


def generate(proto_dir, out):
    if os.path.exists(os.path.join(out, "modify_pb2_grpc.py")):
        return
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            "-I" + proto_dir,
            "-I" + well_known,
            "--python_out=" + out,
            "--grpc_python_out=" + out,
            os.path.join(proto_dir, "csi.proto"),
            os.path.join(proto_dir, "modify.proto"),
        ]
    )
    if status != 0:
        sys.exit(f"protoc failed with {status}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target", help="a gRPC target: unix:///abs/path, unix:/abs/path, unix:rel/path")
    parser.add_argument("--proto", required=True, help="the directory holding csi.proto")
    parser.add_argument("--stubs", required=True, help="where the generated modules go")
    parser.add_argument("--volume", required=True, help="the name of the volume to create and delete")
    parser.add_argument("--authority", help="the channel's :authority instead of grpc-core's own")
    args = parser.parse_args()

    generate(args.proto, args.stubs)
    sys.path.insert(0, args.stubs)
    import csi_pb2 as csi
    import csi_pb2_grpc as rpc
    import modify_pb2
    import modify_pb2_grpc

    options = []
    if args.authority is not None:
        options.append(("grpc.default_authority", args.authority))
    timeout = 20
    with grpc.insecure_channel(args.target, options=options) as channel:
        identity = rpc.IdentityStub(channel)
        controller = rpc.ControllerStub(channel)
        node = rpc.NodeStub(channel)

        info = identity.GetPluginInfo(csi.GetPluginInfoRequest(), timeout=timeout)
        # Several calls on one connection: the later ones refer to grpc-core's HPACK table.
        probes = [identity.Probe(csi.ProbeRequest(), timeout=timeout).ready.value for _ in range(5)]
        caps = node.NodeGetCapabilities(csi.NodeGetCapabilitiesRequest(), timeout=timeout)

        mode = csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        created = controller.CreateVolume(
            csi.CreateVolumeRequest(
                name=args.volume,
                capacity_range=csi.CapacityRange(required_bytes=1 << 30),
                volume_capabilities=[
                    csi.VolumeCapability(
                        mount=csi.VolumeCapability.MountVolume(),
                        access_mode=csi.VolumeCapability.AccessMode(mode=mode),
                    )
                ],
                parameters={"type": "gp3"},
            ),
            timeout=timeout,
        ).volume
        # The sidecar's service on the same connection: gp3 to gp2 through its annotation keys,
        # then a key it does not know.
        modifier = modify_pb2_grpc.ModifyStub(channel)
        modifier.GetCSIDriverModificationCapability(
            modify_pb2.GetCSIDriverModificationCapabilityRequest(), timeout=timeout
        )
        modifier.ModifyVolumeProperties(
            modify_pb2.ModifyVolumePropertiesRequest(
                name=created.volume_id, parameters={"volumeType": "gp2"}
            ),
            timeout=timeout,
        )
        try:
            modifier.ModifyVolumeProperties(
                modify_pb2.ModifyVolumePropertiesRequest(name=created.volume_id, parameters={"colour": "blue"}),
                timeout=timeout,
            )
            modify_refused = "OK"
        except grpc.RpcError as e:
            modify_refused = e.code().name
        controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=created.volume_id), timeout=timeout)

        # A refused call comes back as a status, on the same connection.
        try:
            controller.DeleteVolume(csi.DeleteVolumeRequest(), timeout=timeout)
            refused = "OK"
        except grpc.RpcError as e:
            refused = e.code().name

    rpc_type = csi.NodeServiceCapability.RPC.Type
    print(
        json.dumps(
            {
                "name": info.name,
                "vendor_version": info.vendor_version,
                "probes": probes,
                "node_capabilities": [rpc_type.Name(c.rpc.type) for c in caps.capabilities],
                "volume_id": created.volume_id,
                "capacity_bytes": created.capacity_bytes,
                "refused": refused,
                "modify_refused": modify_refused,
            }
        )
    )


if __name__ == "__main__":
    main()
