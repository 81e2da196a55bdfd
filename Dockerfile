# Build a release binary, then run it on a slim Debian with only what it links.
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin spenza

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
ENTRYPOINT ["spenza"]
CMD ["serve"]
