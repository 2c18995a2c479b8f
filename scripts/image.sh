#!/usr/bin/env bash
# Builds ebs-csi's container image without Docker or a registry: the Dockerfile's runtime stage
# (its Debian suite, the packages in deploy/image/packages.txt) made with mmdebstrap, plus the
# binary, written as an OCI image layout tarball (default target/image/ebs-csi-oci.tar) with umoci.
# Then checks inside the image that `ebs-csi --version` runs and every tool the node service runs
# is there. As root; installs mmdebstrap and umoci when missing.
#
#   scripts/image.sh                      # cargo build --release, then the image
#   scripts/image.sh --binary PATH        # the image around a binary built elsewhere
#   scripts/image.sh --out FILE           # write the tarball there
#
# The root filesystem is cached under target/image/cache, keyed by the suite and the package
# list, so a second run only adds the binary.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"

binary=""
out="$target/image/ebs-csi-oci.tar"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "image.sh: must run as root (mmdebstrap builds the root filesystem as root)" >&2
  exit 2
fi
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v umoci >/dev/null || need+=(umoci)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The same suite and packages as the Dockerfile's runtime stage.
suite=$(sed -n 's/^FROM debian:\([a-z]*\)-slim.*/\1/p' "$repo/Dockerfile")
[ -n "$suite" ] || { echo "image.sh: no 'FROM debian:<suite>-slim' in the Dockerfile" >&2; exit 1; }
packages=$(sed 's/#.*//' "$repo/deploy/image/packages.txt" | xargs)
[ -n "$packages" ] || { echo "image.sh: deploy/image/packages.txt lists no package" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)

if [ -z "$binary" ]; then
  echo "== cargo build --release --bin ebs-csi"
  (cd "$repo" && cargo build --release --locked --bin ebs-csi)
  binary="$target/release/ebs-csi"
fi
[ -x "$binary" ] || { echo "image.sh: $binary is not an executable" >&2; exit 1; }

# The root filesystem: minbase is what debian:<suite>-slim is made of, and the path excludes are
# the slim images' (no docs, man pages or locales).
cache="$target/image/cache"
key=$(printf '%s\n%s\n' "$suite" "$packages" | sha256sum | cut -c1-16)
rootfs_tar="$cache/rootfs-$suite-$key.tar"
work=""
trap 'rm -rf "$rootfs_tar.$$.tmp" ${work:+"$work"}' EXIT
if [ ! -s "$rootfs_tar" ]; then
  echo "== mmdebstrap $suite: $packages"
  mkdir -p "$cache"
  mmdebstrap --quiet --variant=minbase --include="${packages// /,}" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --format=tar "$suite" "$rootfs_tar.$$.tmp" http://deb.debian.org/debian
  mv "$rootfs_tar.$$.tmp" "$rootfs_tar"
else
  echo "== root filesystem from the cache: $rootfs_tar"
fi

work=$(mktemp -d "$target/image/work.XXXXXX")
layout="$work/layout"
echo "== OCI image ebs-csi:$version"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$work/bundle" >/dev/null
tar -C "$work/bundle/rootfs" -xf "$rootfs_tar"
# Debug info is no use in the image and makes a debug build's layer ten times larger.
objcopy --strip-debug "$binary" "$work/bundle/rootfs/usr/bin/ebs-csi" 2>/dev/null ||
  cp "$binary" "$work/bundle/rootfs/usr/bin/ebs-csi"
chmod 0755 "$work/bundle/rootfs/usr/bin/ebs-csi"
umoci repack --image "$layout:$version" "$work/bundle"
umoci config --image "$layout:$version" \
  --config.entrypoint /usr/bin/ebs-csi \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.base.name=debian:$suite-slim" \
  --history.created_by "scripts/image.sh"
umoci gc --layout "$layout"
mkdir -p "$(dirname "$out")"
tar -C "$layout" -cf "$out.tmp" .
mv "$out.tmp" "$out"

# The check, on the image read back from the tarball: the binary runs (its libraries are the
# image's) and every program the node service runs is on the image's PATH.
echo "== checking the image"
check="$work/check"
mkdir -p "$check/layout"
tar -C "$check/layout" -xf "$out"
umoci unpack --image "$check/layout:$version" "$check/bundle" >/dev/null
rootfs="$check/bundle/rootfs"
chroot "$rootfs" /usr/bin/ebs-csi --version
# What src/ runs: run("tool", …) and run_accepting("tool", …), and the mkfs.<fs> it names (the
# benchmark and the demo run on the host, not in the image).
tools=$(cd "$repo" && find src -name '*.rs' ! -name 'bench.rs' ! -path 'src/demo*' -print0 |
  xargs -0 perl -0777 -ne 'print "$+\n" while /\brun(?:_accepting)?\(\s*"([^"]+)"|"(mkfs\.[a-z0-9]+)"/g' |
  sort -u | xargs)
[ -n "$tools" ] || { echo "image.sh: found no tool the source runs; has src/os moved?" >&2; exit 1; }
missing=$(chroot "$rootfs" /bin/sh -c 'for t; do command -v "$t" >/dev/null || printf "%s " "$t"; done' sh $tools)
if [ -n "$missing" ]; then
  echo "image.sh: the image lacks $missing(add the package to deploy/image/packages.txt)" >&2
  exit 1
fi
echo "   found: $tools"
echo "== wrote $out ($(du -h "$out" | cut -f1)), image ebs-csi:$version"
