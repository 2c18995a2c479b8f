#!/usr/bin/env bash
# The controller half of the seed's life cycle on the local backend, with real gRPC calls to a
# real driver: CreateVolume (CREATED) → ControllerPublish (NODE_READY: a loop device) →
# ControllerUnpublish → DeleteVolume. Run as root on any Linux machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "demo: run as root (attach makes real loop devices)" >&2; exit 2; fi
cargo build --release --quiet
bin=target/release/ebs-csi
work=$(mktemp -d /tmp/ebs-csi-demo.XXXXXX)
sock="unix://$work/csi.sock"
"$bin" serve --endpoint "$sock" --data-dir "$work/data" --node-id demo-node --zone local-1a 2>"$work/driver.log" &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for dev in $(losetup -j "$work/data/volumes" -O NAME -n 2>/dev/null); do losetup -d "$dev" || true; done
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$work/csi.sock" ] && break; sleep 0.1; done

call() { echo "\$ ebs-csi client $*" >&2; "$bin" client --endpoint "$sock" "$@"; }
call info
out=$(call create-volume pvc-demo --size-gib 10 -p type=gp3 -p csi.storage.k8s.io/fstype=ext4)
echo "$out"
vol=$(echo "$out" | grep -o 'vol-[0-9a-f]\{17\}' | head -1)
echo "== CREATED: $vol, a sparse file: $(du -h --apparent-size "$work/data/volumes/$vol.img" | cut -f1) apparent, $(du -h "$work/data/volumes/$vol.img" | cut -f1) used"
call publish "$vol" demo-node
echo "== NODE_READY: $(losetup -j "$work/data/volumes/$vol.img")"
call list-volumes
call unpublish "$vol" demo-node
call delete-volume "$vol"
echo "== deleted; loop devices left: $(losetup -j "$work/data/volumes/$vol.img" | wc -l)"
