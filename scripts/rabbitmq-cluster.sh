#!/usr/bin/env bash
# A three-node RabbitMQ cluster on loopback, made of the installed RabbitMQ: for trying the relay
# on a cluster and for the test that stops nodes under load. Each node has its own name, ports,
# data and logs under DIR; the machine's own broker (rabbit@<host>, port 5672) is not touched.
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
# Node N is spenza-PORT-N@localhost, with Erlang distribution on its AMQP port + 20000. Run as
# root or as the owner of DIR; the nodes share a cookie of their own in DIR.
set -euo pipefail

bin=/usr/lib/rabbitmq/bin
[[ -x $bin/rabbitmq-server ]] || "$(dirname "$0")/services.sh" >&2

usage() {
  sed -n '6,15s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

(($# >= 2)) || usage
command=$1
dir=$2
# The CLI and the nodes find the cookie in $HOME.
export HOME=$dir

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
    RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins \
    RABBITMQ_PID_FILE=$node_dir/pid \
    "$bin/rabbitmq-server" -detached
}

await_node() {
  ctl "$1" wait --timeout 120 "$dir/node$1/pid" >/dev/null
}

kill_node() {
  local pid_file="$dir/node$1/pid" pid
  [[ -s $pid_file ]] || return 0
  pid=$(cat "$pid_file")
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$pid_file"
}

case $command in
up)
  port=${3:-5681}
  mkdir -p "$dir"
  echo "$port" >"$dir/port"
  (umask 077 && head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$dir/.erlang.cookie")
  echo '[].' >"$dir/enabled_plugins"
  for n in 1 2 3; do start_node "$n"; done
  for n in 1 2 3; do await_node "$n"; done
  for n in 2 3; do
    ctl "$n" stop_app
    ctl "$n" join_cluster "$(name_of 1)"
    ctl "$n" start_app
  done
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
  # Any running node answers for the cluster. The first node named on the queue's line is a
  # quorum queue's leader, or the node in a classic queue's process id.
  for n in 1 2 3; do
    if queues=$(ctl "$n" list_queues name leader pid --no-table-headers 2>/dev/null); then
      awk -v queue="$3" '$1 == queue' <<<"$queues" | grep -o 'spenza-[0-9]*-[1-3]@' | head -n 1 |
        sed 's/.*-\([1-3]\)@/\1/'
      exit 0
    fi
  done
  echo "no node of the cluster answers" >&2
  exit 1
  ;;
connections)
  # A connection's process id names its node: <spenza-5681-1@localhost.1234.5678.0>.
  ctl "$3" list_connections pid --no-table-headers | grep -c "^<$(name_of "$3")\." || true
  ;;
down)
  for n in 1 2 3; do kill_node "$n"; done
  rm -rf "$dir"
  ;;
*)
  usage
  ;;
esac
