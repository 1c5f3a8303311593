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
  token=$("$BIN/certmesh-server" token create --state "$DIR/server" --tags demo)
  "$BIN/certmesh" agent --state "$DIR/$name" --server "https://127.0.0.1:$PORT" --root-fingerprint "$FP" \
    --token "$token" --userspace --socks5 "127.0.0.1:$(free_port)" --hostname "$name" --advertise 127.0.0.1 \
    >"$DIR/$name.log" 2>&1 &
  pids+=($!)
done

echo "waiting for every agent to verify its two peers..."
for i in $(seq 1 100); do
  ok=0
  for name in alpha beta gamma; do
    c=$("$BIN/certmesh" status --state "$DIR/$name" --json 2>/dev/null | grep -c '"verified": true' || true)
    [ "$c" = 2 ] && ok=$((ok + 1))
  done
  [ "$ok" = 3 ] && break
  sleep 0.2
done
echo "waiting for the WireGuard handshakes between every pair..."
for i in $(seq 1 75); do
  hs=0
  for name in alpha beta gamma; do
    c=$("$BIN/certmesh" status --state "$DIR/$name" --json 2>/dev/null | grep -c '"last_handshake"' || true)
    hs=$((hs + c))
  done
  [ "$hs" -ge 6 ] && break
  sleep 0.2
done
for name in alpha beta gamma; do
  echo; echo "== certmesh status --state $DIR/$name"
  "$BIN/certmesh" status --state "$DIR/$name"
done
"$BIN/certmesh-server" devices list --state "$DIR/server"
[ "$ok" = 3 ] || { echo "demo: agents did not all verify each other; see $DIR/*.log" >&2; exit 1; }
if [ "$HOLD" = 1 ]; then
  echo; echo "mesh is up (logs in $DIR/). Ctrl-C to stop."
  wait
fi
