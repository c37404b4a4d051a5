#!/usr/bin/env bash
# fmt-sees-all.sh: fails, naming them, on the workspace's .rs files that `cargo fmt` never
# visits (rustfmt does not follow a `mod` declared inside a macro), so `cargo fmt --check`
# cannot pass over a file it never read. Run by `make lint`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# -v names each file rustfmt formats; the check's exit status is `cargo fmt --check`'s business.
visited=$(cargo fmt --all -- --check -v 2>/dev/null | sed -n "s|^Formatting $root/||p" | sort -u || true)
all=$(git ls-files --cached --others --exclude-standard -- '*.rs' | while read -r f; do [ -f "$f" ] && echo "$f"; done | sort -u)
unvisited=$(comm -23 <(printf '%s\n' "$all") <(printf '%s\n' "$visited") | sed '/^$/d')
if [ -n "$unvisited" ]; then
  echo "fmt-sees-all: rustfmt never visits these files (declare their modules outside macros):" >&2
  printf '  %s\n' $unvisited >&2
  exit 1
fi
echo "fmt-sees-all: rustfmt visits all $(printf '%s\n' "$all" | wc -l) .rs files"
