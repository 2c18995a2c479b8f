#!/usr/bin/env bash
# The aws backend's benchmark against moto's EC2 server on loopback (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-test/bin/moto_server ]; then
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q "moto[server]"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_EC2_LOAD_DEFAULT_AMIS=false .venv-test/bin/moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill "$moto" 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
cargo build --release --quiet
./target/release/ebs-csi bench --aws-endpoint "http://127.0.0.1:$port" "$@"
