#!/usr/bin/env bash
# bench.sh: builds the release binaries and runs the benchmarks (numbers printed, not asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CACHE:-$HOME/.cache/quake}"
export QUAKE_MOTO_SERVER="${QUAKE_MOTO_SERVER:-$CACHE/venv/bin/moto_server}"
export QUAKE_SHARED="${QUAKE_SHARED:-$(cd .. && pwd)/shared}"
cargo build --release -p quake --bin quake
cargo bench -p quake --bench ingest
# 10,000 SSE clients and the server each need that many descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo bench -p quake --bench web
cargo bench -p provisioner --bench provisioner
