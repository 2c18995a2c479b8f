#!/usr/bin/env bash
# The seed's volume life cycle, end to end, on the local backend: `ebs-csi demo`.
# Run as root on a fresh Linux machine; installs util-linux/e2fsprogs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v losetup >/dev/null || need_apt+=(util-linux)
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)
if [ ${#need_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
modprobe loop 2>/dev/null || true
# The demo runs on the local backend: built without the AWS SDK (the `aws` feature), the first
# build takes a couple of minutes instead of a quarter of an hour.
exec cargo run --quiet --release --no-default-features -- demo "$@"
