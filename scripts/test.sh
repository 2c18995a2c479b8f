#!/usr/bin/env bash
# Runs ebs-csi's checks and tests on a fresh Linux machine, as root (the tests make real loop
# devices). Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v losetup >/dev/null || need_apt+=(util-linux)
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)
command -v mkfs.xfs >/dev/null || need_apt+=(xfsprogs)
# tests/deployed.rs: the image (scripts/image.sh) and the pods under a real container runtime.
command -v runc >/dev/null || need_apt+=(runc)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
command -v umoci >/dev/null || need_apt+=(umoci)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Loop devices need the loop module and device nodes; make a few if the host has none yet.
modprobe loop 2>/dev/null || true
[ -e /dev/loop-control ] || mknod -m 0660 /dev/loop-control c 10 237 2>/dev/null || true

# moto's EC2 server, for the aws backend's tests, in a venv of its own.
if [ ! -x .venv-test/bin/moto_server ]; then
  echo "== installing moto[server] into .venv-test"
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q "moto[server]"
fi
export MOTO_SERVER="$PWD/.venv-test/bin/moto_server"

# kubernetes-validate (the Kubernetes schemas, offline), for tests/manifests.rs; same venv.
if [ ! -x .venv-test/bin/kubernetes-validate ]; then
  echo "== installing kubernetes-validate into .venv-test"
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q kubernetes-validate
fi
export KUBERNETES_VALIDATE="$PWD/.venv-test/bin/kubernetes-validate"
# tests/manifests.rs renders deploy/kubernetes with kubectl's built-in kustomize.
command -v kubectl >/dev/null || { echo "kubectl is needed (kubectl kustomize renders deploy/kubernetes)" >&2; exit 1; }

# grpcio and grpcio-tools, for tests/grpc_clients.rs (Python's gRPC client against the driver);
# same venv.
if ! .venv-test/bin/python -c "import grpc, grpc_tools" 2>/dev/null; then
  echo "== installing grpcio and grpcio-tools into .venv-test"
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q grpcio grpcio-tools
fi
export GRPC_PYTHON="$PWD/.venv-test/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# The local-only build (no AWS SDK) must stay whole too.
cargo clippy --all-targets --locked --no-default-features -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
leaked=$(losetup -a | grep -c ebs-csi-test || true)
if [ "$leaked" != "0" ]; then
  echo "tests leaked $leaked loop devices:" >&2
  losetup -a | grep ebs-csi-test >&2
  exit 1
fi
