#!/usr/bin/env bash
# Brings up a certmesh on this machine with the embedded defaults: one
# server (CA + coordinator) and three userspace agents on loopback, then
# prints `certmesh status` of each. Needs no root. Ctrl-C stops it all.
# DEMO_HOLD=0 makes it stop by itself after printing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DIR=${DEMO_DIR:-demo-state}
HOLD=${DEMO_HOLD:-1}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

rm -rf "$DIR" && mkdir -p "$DIR"
PORT=$(free_port)
FP=$("$BIN/certmesh-server" init --state "$DIR/server" --trust-domain demo.certmesh --listen "127.0.0.1:$PORT" | tee /dev/stderr | awk '/fingerprint/ {print $NF}')
"$BIN/certmesh-server" run --state "$DIR/server" >"$DIR/server.log" 2>&1 &
pids+=($!)
for i in $(seq 1 50); do [ -S "$DIR/server/admin.sock" ] && break; sleep 0.1; done

n=0
for name in alpha beta gamma; do
  n=$((n + 1))
  token=$("$BIN/certmesh-server" tokens create --state "$DIR/server" --tags demo)
  "$BIN/certmesh" agent --state "$DIR/$name" --server "https://127.0.0.1:$PORT" --root-fingerprint "$FP" \
    --token "$token" --userspace --socks5 "127.0.0.1:$(free_port)" --hostname "$name" --advertise 127.0.0.1 \
    >"$DIR/$name.log" 2>&1 &
  pids+=($!)
done

# counts PATTERN: how many lines of each agent's status (JSON) match
# PATTERN, one number an agent.
counts() {
  for name in alpha beta gamma; do
    "$BIN/certmesh" status --state "$DIR/$name" --json 2>/dev/null | grep -c "$1" || true
  done
}
# wait_for TRIES TEST PATTERN: polls, every 0.2 s and at most TRIES times,
# until the function TEST holds for the agents' counts of PATTERN.
wait_for() {
  for i in $(seq 1 "$1"); do
    "$2" $(counts "$3") && return 0
    sleep 0.2
  done
  return 1
}
each_two() { [ "$*" = "2 2 2" ]; }
six_in_all() { [ $(($1 + $2 + $3)) -ge 6 ]; }

echo "waiting for every agent to verify its two peers..."
verified=0
wait_for 100 each_two '"verified": true' && verified=1
echo "waiting for the WireGuard handshakes between every pair..."
wait_for 75 six_in_all '"last_handshake"' || true
for name in alpha beta gamma; do
  echo; echo "== certmesh status --state $DIR/$name"
  "$BIN/certmesh" status --state "$DIR/$name"
done
"$BIN/certmesh-server" devices list --state "$DIR/server"
[ "$verified" = 1 ] || { echo "demo: agents did not all verify each other; see $DIR/*.log" >&2; exit 1; }
if [ "$HOLD" = 1 ]; then
  echo; echo "mesh is up (logs in $DIR/). Ctrl-C to stop."
  wait
fi
