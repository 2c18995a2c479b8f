# ebs-csi's container image: the one binary, plus the tools the node service runs (mkfs, blkid,
# resize2fs, xfs_growfs, e2fsck), from deploy/image/packages.txt.
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

# scripts/image.sh builds the same runtime image without Docker: it reads the suite from the FROM
# line below and the packages from deploy/image/packages.txt.
FROM debian:trixie-slim
COPY deploy/image/packages.txt /tmp/packages.txt
RUN apt-get update \
    && sed 's/#.*//' /tmp/packages.txt \
        | DEBIAN_FRONTEND=noninteractive xargs apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/packages.txt
COPY --from=builder /src/target/release/ebs-csi /usr/bin/ebs-csi
ENTRYPOINT ["/usr/bin/ebs-csi"]
