#!/usr/bin/env bash
# test.sh: runs the whole test suite with a real Kafka broker (noida-db) beside the in-process
# mock cluster. moto server is started by the tests themselves, one per test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CACHE:-$HOME/.cache/quake}"
export QUAKE_MOTO_SERVER="${QUAKE_MOTO_SERVER:-$CACHE/venv/bin/moto_server}"
export QUAKE_SHARED="${QUAKE_SHARED:-$(cd .. && pwd)/shared}"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
"$CACHE/noida/bin/noida-db" start --only kafka --kafka-port "$port" --data-dir "$data" >"$data/noida.log" 2>&1 &
noida_pid=$!
trap 'kill $noida_pid 2>/dev/null; wait $noida_pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done
export QUAKE_TEST_KAFKA="127.0.0.1:$port"
echo "noida-db Kafka broker on $QUAKE_TEST_KAFKA"

status=0
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --no-fail-fast || status=$?
else
  cargo test --workspace --no-fail-fast || status=$?
fi
# The Lambda@Edge login (Node's test runner, against its own moto).
node --test assets/edge-auth/test/auth.test.mjs || status=$?
exit $status
