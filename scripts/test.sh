#!/usr/bin/env bash
# Runs the whole test suite (unit and integration) against real PostgreSQL and RabbitMQ, which it
# provisions first. Each test creates and drops its own database and queues. The load benchmark
# is not a test: run it with `cargo bench --bench relay`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/services.sh
# The browser tests drive Debian's Chromium through its chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "installing: chromium chromium-driver"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
exec cargo test --locked --lib --bins --tests "$@"
