# syntax=docker/dockerfile:1
# Multi-stage: build with the locked dependency set, ship a small non-root image.
# Build args:
#   FEATURES  cargo features to build (default: every source: "vault,file,aws";
#             "vault,file" for a smaller image without the AWS SDK)
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG FEATURES=vault,file,aws
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target directory are build caches (kept between builds on one machine, never
# in an image layer), so a rebuild after a source change recompiles the launcher only.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --features "${FEATURES}" \
 && install -m 0755 target/release/launcher /usr/local/bin/launcher

FROM debian:bookworm-slim
# libssl3: the launcher verifies certificates with the same OpenSSL libpq uses.
# ca-certificates: for an https:// Vault with a public certificate.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/launcher /usr/local/bin/launcher
USER 10001
ENTRYPOINT ["launcher"]
CMD ["--help"]
