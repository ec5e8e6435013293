#!/usr/bin/env bash
# A local Trail cluster: three trail-node processes on loopback, devstack's SLS
# (a 4-shard ActionTrail logstore fed at a steady rate) and a Splunk HEC
# receiver. The HA demo: kill one node, watch `trailctl status`.
#
#   deploy/local/cluster.sh up            # build, start clean, print the trailctl endpoint
#   deploy/local/cluster.sh down          # stop everything, keep logs and data for a look
#   deploy/local/cluster.sh down --purge  # stop everything, remove the directory
#
# Every `up` starts clean: devstack's SLS is new each time (new shards, new
# cursors), so the raft data and checkpoints of an earlier run would point
# at cursors that no longer exist. `up` removes them first and says so.
#
# Environment: TRAIL_CLUSTER_DIR (state, configs, logs; default
# /tmp/trail-cluster), TRAIL_BIN_DIR (prebuilt binaries; default: build
# release), TRAIL_RATE (events/s into SLS; default 500), TRAIL_BASE_PORT
# (default 7400: nodes at +1..+3, SLS +80, HEC +88, metrics +11..+13).
set -euo pipefail

here="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${TRAIL_CLUSTER_DIR:-/tmp/trail-cluster}"
base="${TRAIL_BASE_PORT:-7400}"
rate="${TRAIL_RATE:-500}"
token="local-cluster-token"
ak="devstack-ak"
export DEVSTACK_ACCESS_KEY_SECRET="devstack-secret"
export TRAIL_SLS_SECRET="$DEVSTACK_ACCESS_KEY_SECRET"
export TRAIL_HEC_TOKEN="local-hec-token"
export TRAIL_CONTROL_TOKEN="$token"

bins() {
  if [[ -n "${TRAIL_BIN_DIR:-}" ]]; then
    echo "$TRAIL_BIN_DIR"
  else
    (cd "$here" && cargo build --release -q -p trail-node -p trail-devstack -p trailctl) >&2
    echo "${CARGO_TARGET_DIR:-$here/target}/release"
  fi
}

wait_port() { # host:port
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1 (see $dir/*.log)" >&2
  return 1
}

node_config() { # id
  local id=$1 extra
  if [[ $id == 1 ]]; then extra='bootstrap = true'; else extra="join = [\"127.0.0.1:$((base + 1))\"]"; fi
  cat > "$dir/n$id.toml" <<TOML
[node]
id = "n$id"
data_dir = "$dir/n$id"

[source]
endpoint = "http://sls.test"
address = "127.0.0.1:$((base + 80))"
project = "trail-demo"
logstore = "actiontrail_demo"
access_key_id = "$ak"
access_key_secret = { env = "TRAIL_SLS_SECRET" }
start = "begin"

[[sinks]]
type = "hec"
url = "http://127.0.0.1:$((base + 88))"
token = { env = "TRAIL_HEC_TOKEN" }

[dead_letter]
path = "$dir/n$id/dead-letters.jsonl"

[metrics]
listen = "127.0.0.1:$((base + 10 + id))"

[control]
listen = "127.0.0.1:$((base + id))"
token = { env = "TRAIL_CONTROL_TOKEN" }

[cluster]
node_id = $id
$extra
TOML
}

up() {
  local b
  b="$(bins)"
  mkdir -p "$dir"
  if compgen -G "$dir/*.pid" > /dev/null; then
    echo "a cluster is already up in $dir (run: $0 down)" >&2
    exit 1
  fi
  if compgen -G "$dir/n[0-9]*" > /dev/null || compgen -G "$dir/*.log" > /dev/null; then
    echo "starting clean: removing the previous run's raft data, checkpoints and logs in $dir" >&2
    echo "  (devstack's SLS starts empty, so its old cursors mean nothing now)" >&2
    rm -rf "$dir"/n[0-9]* "$dir"/*.log "$dir"/*.toml
  fi
  "$b/trail-devstack" sls --listen "127.0.0.1:$((base + 80))" --access-key-id "$ak" \
    --project trail-demo --logstore actiontrail_demo --shards 4 > "$dir/sls.log" 2>&1 &
  echo $! > "$dir/sls.pid"
  "$b/trail-devstack" hec --listen "127.0.0.1:$((base + 88))" --token "$TRAIL_HEC_TOKEN" --ids-only \
    > "$dir/hec.log" 2>&1 &
  echo $! > "$dir/hec.pid"
  wait_port "127.0.0.1:$((base + 80))"
  wait_port "127.0.0.1:$((base + 88))"
  "$b/trail-devstack" gen --sls-endpoint http://sls.test --sls-address "127.0.0.1:$((base + 80))" \
    --project trail-demo --logstore actiontrail_demo --access-key-id "$ak" \
    --events 100000000 --rate "$rate" --group-size 50 > "$dir/gen.log" 2>&1 &
  echo $! > "$dir/gen.pid"
  for id in 1 2 3; do
    node_config "$id"
    RUST_LOG="${RUST_LOG:-info}" "$b/trail-node" run --config "$dir/n$id.toml" > "$dir/n$id.log" 2>&1 &
    echo $! > "$dir/n$id.pid"
    wait_port "127.0.0.1:$((base + id))"
  done
  cat <<MSG
Trail cluster up: 3 nodes, SLS shards fed at $rate events/s, HEC receiving.
  export TRAIL_ENDPOINT=http://127.0.0.1:$((base + 1)) TRAIL_TOKEN=$token
  $b/trailctl status --watch 1
Kill a node and watch its shards move to their standbys:
  kill -9 \$(cat $dir/n2.pid)
Logs and data: $dir    Stop: $0 down
MSG
}

down() {
  for f in "$dir"/*.pid; do
    [[ -e $f ]] || continue
    kill -9 "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  if [[ "${1:-}" == "--purge" ]]; then
    rm -rf "$dir"
    echo "stopped; removed $dir"
  else
    echo "stopped; logs and data remain in $dir (the next up starts clean; down --purge removes them now)"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down "${2:-}" ;;
  *) echo "usage: $0 up | down [--purge]" >&2; exit 2 ;;
esac
