#!/usr/bin/env bash
# A three-node RabbitMQ cluster on loopback, made of the installed RabbitMQ: for trying the relay
# on a cluster and for the test that stops nodes under load. Each node has its own name, ports,
# configuration, data and logs under DIR, and reads none of /etc/rabbitmq; the machine's own
# broker (port 5672) is left as it is (where RabbitMQ is missing, services.sh installs it first).
#
#   scripts/rabbitmq-cluster.sh up DIR [PORT]   start nodes 1-3 on AMQP ports PORT..PORT+2
#                                               (default 5681), join 2 and 3 to 1, print the
#                                               nodes' URLs, comma-separated: SPENZA_AMQP_URL
#   scripts/rabbitmq-cluster.sh kill DIR N      stop node N at once (SIGKILL), as a crash would
#   scripts/rabbitmq-cluster.sh start DIR N     start node N again: it rejoins the cluster
#   scripts/rabbitmq-cluster.sh home DIR Q      the node (1-3) holding queue Q: a quorum queue's
#                                               leader, a classic queue's only node
#   scripts/rabbitmq-cluster.sh connections DIR N
#                                               client connections node N holds
#   scripts/rabbitmq-cluster.sh down DIR        stop every node and remove DIR
#
# Node N is spenza-PORT-N@localhost, with Erlang distribution on its AMQP port + 20000, all on
# 127.0.0.1. DIR must not exist for `up`. Run as root or as the owner of DIR; the nodes share a
# cookie of their own in DIR.
set -euo pipefail

bin=/usr/lib/rabbitmq/bin
[[ -x $bin/rabbitmq-server ]] || "$(dirname "$0")/services.sh" >&2

usage() {
  sed -n '7,17s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

(($# >= 2)) || usage
command=$1
dir=$(realpath -m "$2")
# The CLI and the nodes find the cookie in $HOME; neither reads the machine's rabbitmq-env.conf,
# and both keep Erlang's distribution on loopback.
export HOME=$dir
export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"

port_of() { echo $(($(cat "$dir/port") + $1 - 1)); }
name_of() { echo "spenza-$(cat "$dir/port")-$1@localhost"; }
ctl() { # node, arguments...
  local node=$1
  shift
  "$bin/rabbitmqctl" -q -n "$(name_of "$node")" "$@"
}

start_node() {
  local n=$1 node_dir="$dir/node$1"
  mkdir -p "$node_dir"
  printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$(port_of "$n")" >"$node_dir/rabbitmq.conf"
  RABBITMQ_NODENAME=$(name_of "$n") \
    RABBITMQ_NODE_PORT=$(port_of "$n") \
    RABBITMQ_DIST_PORT=$(($(port_of "$n") + 20000)) \
    RABBITMQ_BASE=$node_dir \
    RABBITMQ_MNESIA_BASE=$node_dir/data \
    RABBITMQ_LOG_BASE=$node_dir/log \
    RABBITMQ_CONFIG_FILE=$node_dir/rabbitmq.conf \
    RABBITMQ_CONFIG_FILES=$node_dir/conf.d \
    RABBITMQ_ADVANCED_CONFIG_FILE=$node_dir/advanced.config \
    RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins \
    RABBITMQ_PID_FILE=$node_dir/pid \
    "$bin/rabbitmq-server" -detached
}

await_node() {
  ctl "$1" wait --timeout 120 "$dir/node$1/pid" >/dev/null
}

# Kills node N's Erlang VM, if the pid its file names is still that node's (a pid file left by
# a machine's restart may name another process by now), and waits for it to be gone.
kill_node() {
  local pid_file="$dir/node$1/pid" pid
  [[ -s $pid_file ]] || return 0
  pid=$(cat "$pid_file")
  rm -f "$pid_file"
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-home $dir "; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
      # Gone, or a zombie that its parent has yet to reap: either way it holds nothing.
      [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo Z) == Z ]] && return 0
      sleep 0.1
    done
    echo "node $1 (pid $pid) did not stop" >&2
    return 1
  fi
}

down() {
  local n failed=0
  for n in 1 2 3; do kill_node "$n" || failed=1; done
  rm -rf "$dir"
  return "$failed"
}

case $command in
up)
  port=${3:-5681}
  if [[ -e $dir ]]; then
    echo "$dir exists: take the cluster there down first, or choose another folder" >&2
    exit 1
  fi
  mkdir -p "$dir"
  echo "$port" >"$dir/port"
  (umask 077 && head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$dir/.erlang.cookie")
  echo '[].' >"$dir/enabled_plugins"
  # A node that does not come up takes the others down with it, after showing the nodes' logs.
  trap 'echo "the cluster did not come up; the end of its nodes logs:" >&2
    tail -n 20 "$dir"/node*/log/*.log >&2 || true
    down' ERR
  for n in 1 2 3; do start_node "$n"; done
  for n in 1 2 3; do await_node "$n"; done
  for n in 2 3; do
    ctl "$n" stop_app
    ctl "$n" join_cluster "$(name_of 1)"
    ctl "$n" start_app
  done
  trap - ERR
  urls=()
  for n in 1 2 3; do urls+=("amqp://guest:guest@127.0.0.1:$(port_of "$n")/%2f"); done
  (IFS=,; echo "${urls[*]}")
  ;;
kill)
  kill_node "$3"
  ;;
start)
  start_node "$3"
  await_node "$3"
  ;;
home)
  # Any running node answers for the cluster.
  for n in 1 2 3; do
    if queues=$(ctl "$n" list_queues name type leader pid --no-table-headers 2>/dev/null); then
      home=$(awk -F '\t' -v queue="$3" '$1 == queue {
          node = ($2 == "quorum") ? $3 : $4
          if (match(node, /spenza-[0-9]+-[1-3]@/)) print substr(node, RSTART + RLENGTH - 2, 1)
        }' <<<"$queues")
      if [[ -z $home ]]; then
        echo "no node holds $3 (no such queue, or an election under way)" >&2
        exit 1
      fi
      echo "$home"
      exit 0
    fi
  done
  echo "no node of the cluster answers" >&2
  exit 1
  ;;
connections)
  # A connection's process id names its node: <spenza-5681-1@localhost.1234.5678.0>.
  connections=$(ctl "$3" list_connections pid --no-table-headers)
  grep -c "^<$(name_of "$3")\." <<<"$connections" || true
  ;;
down)
  down
  ;;
*)
  usage
  ;;
esac
