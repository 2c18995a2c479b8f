# ebs-csi's container image: the one binary, plus the tools the node service runs (mkfs, blkid,
# resize2fs, xfs_growfs, e2fsck).
#
#   docker build -t ebs-csi:0.1.0 .
#
# (deploy/kubernetes uses the image ebs-csi:0.1.0; push it to your registry and set the name with
# kustomize's `images:`, or `kind load docker-image ebs-csi:0.1.0` for kind.)

FROM rust:1-trixie AS builder
# aws-lc-sys (TLS for the EC2 API) builds C code with cmake.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ebs-csi

FROM debian:trixie-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates e2fsprogs xfsprogs util-linux mount \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/target/release/ebs-csi /usr/bin/ebs-csi
ENTRYPOINT ["/usr/bin/ebs-csi"]
