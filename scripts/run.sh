#!/usr/bin/env bash
# Runs the relay on this machine: provisions PostgreSQL and RabbitMQ, creates the database,
# builds the release binary and serves on http://127.0.0.1:8080 (migrations apply at start-up).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/services.sh
database=$(basename "${SPENZA_DATABASE_URL:-spenza}")
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE \"$database\""
fi
exec cargo run --release --locked -- serve "$@"
