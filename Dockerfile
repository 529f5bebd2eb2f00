# syntax=docker/dockerfile:1
# Build stage: the toolchain image compiles a release binary from the locked dependency set.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin cdkube

# Runtime stage: slim Debian with CA roots (HTTPS remotes) and the OpenSSH client, which gix spawns
# for ssh:// and git@host:path remotes. Runs as the unprivileged uid 65532.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates openssh-client \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cdkube /usr/local/bin/cdkube
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/cdkube"]
