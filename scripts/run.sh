#!/usr/bin/env bash
# Runs the relay on this machine: provisions PostgreSQL and RabbitMQ, creates the database,
# builds the release binary and serves on http://127.0.0.1:8080 (migrations apply at start-up).
# Deliveries to loopback are allowed (SPENZA_ALLOWED_TARGET_NETS=127.0.0.0/8) unless you say
# otherwise; SPENZA_ALLOWED_TARGET_NETS= (empty) allows no internal range at all.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/services.sh
database=$(basename "${SPENZA_DATABASE_URL:-spenza}")
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE \"$database\""
fi
# Local development delivers to local endpoints, which the SSRF guard refuses unless opened.
export SPENZA_ALLOWED_TARGET_NETS="${SPENZA_ALLOWED_TARGET_NETS-127.0.0.0/8}"
exec cargo run --release --locked -- serve "$@"
