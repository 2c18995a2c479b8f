#!/usr/bin/env bash
# The aws backend's faults benchmark (docs/benchmarks.md): moto's EC2 server on loopback, the
# fault proxy (scripts/ec2-fault-proxy.py, a stand-in for EC2's latency, throttling, lost answers
# and volumes that take a while to become available) in front of it, then
#   ebs-csi bench --aws-endpoint MOTO --fault-proxy PROXY --callers 8 --operations 96
# Arguments, if any, replace `--callers 8 --operations 96`; PROXY_ARGS go to the proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-test/bin/moto_server ]; then
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q "moto[server]"
fi
cargo build --release --quiet

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_EC2_LOAD_DEFAULT_AMIS=false .venv-test/bin/moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

# shellcheck disable=SC2086 # PROXY_ARGS is a list of options
python3 scripts/ec2-fault-proxy.py --upstream "http://127.0.0.1:$port" --port-file "$work/proxy-port" \
  --latency-ms 40 --throttle-percent 20 --lose-create-percent 10 --creating-seconds 1.5 ${PROXY_ARGS:-} &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/proxy-port" ] && break; sleep 0.1; done
[ -s "$work/proxy-port" ] || { echo "the fault proxy did not start" >&2; exit 1; }

[ $# -gt 0 ] || set -- --callers 8 --operations 96
./target/release/ebs-csi bench --aws-endpoint "http://127.0.0.1:$port" \
  --fault-proxy "http://127.0.0.1:$(cat "$work/proxy-port")" "$@"
