# Build a release binary, then run it on a slim Debian with only what it links.
FROM rust:1-bookworm AS builder
WORKDIR /src
# Dependencies first, from the manifest alone, so that a change to the relay's own code
# rebuilds only the relay: this layer is reused until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/relay.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY . .
# The stubs' build outputs are older than the sources: touching makes cargo rebuild the crate.
RUN touch src/main.rs src/lib.rs build.rs \
    && cargo build --release --locked --bin spenza

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 spenza
COPY --from=builder /src/target/release/spenza /usr/local/bin/spenza
USER spenza
ENV SPENZA_BIND=0.0.0.0:8080 \
    SPENZA_LOG_FORMAT=json
EXPOSE 8080
# `spenza healthcheck` asks this container's own /healthz: the image needs no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["spenza", "healthcheck"]
ENTRYPOINT ["spenza"]
CMD ["serve"]
