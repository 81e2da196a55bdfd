#!/usr/bin/env bash
# Makes sure what the relay needs is on this machine and running: PostgreSQL on 127.0.0.1:5432
# (user postgres, trust auth on loopback) and RabbitMQ on 127.0.0.1:5672 (guest/guest), plus the
# C libraries the build links. Installs with apt where something is missing (run as root).
# Safe to run again: it only does what is not done yet.
set -euo pipefail

missing=()
command -v pg_ctlcluster >/dev/null || missing+=(postgresql postgresql-contrib)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
command -v pkg-config >/dev/null || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v cc >/dev/null || missing+=(gcc)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, seconds, command...
  local name=$1 seconds=$2
  shift 2
  for _ in $(seq "$((seconds * 2))"); do
    if "$@"; then return 0; fi
    sleep 0.5
  done
  echo "$name did not come up within ${seconds}s" >&2
  return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for PostgreSQL 60 pg_isready -q -h 127.0.0.1 -p 5432
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
  # A fresh Debian cluster asks for passwords over TCP: trust loopback, as a development and CI
  # machine expects (never do this on a shared host).
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  echo "trusting loopback connections in $hba"
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  wait_for "PostgreSQL (trust auth)" 30 psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null
fi

if ! port_open 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ 120 port_open 5672
  rabbitmqctl await_startup >/dev/null
fi
