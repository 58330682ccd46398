#!/usr/bin/env bash
# Incremental dev rebuild times (issue 22): a one-function edit in the Postgres adapter,
# in models and in engine (a new private function appended, then taken back), timed for
# `cargo build --bin tidepool` and for `cargo test --workspace --no-run --tests`. Run on a
# warm target folder; prints seconds. Usage: bash bench/rebuild.sh [file ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidepool-target}
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(crates/server/src/protocol/pg/handler.rs crates/models/src/render.rs crates/engine/src/functions.rs)
  # Before the crates were cut the files were under src/.
  [ -f crates/server/src/protocol/pg/handler.rs ] || files[0]=src/protocol/pg/handler.rs
  [ -f crates/engine/src/functions.rs ] || files[2]=src/engine/functions.rs
  [ -f crates/models/src/render.rs ] || files[1]=src/models/render.rs
fi
cargo build --bin tidepool -q && cargo test --workspace --no-run --tests -q 2>/dev/null
echo "== incremental dev rebuilds after a one-function edit, $(nproc) cores, $(git rev-parse --short HEAD)"
for f in "${files[@]}"; do
  cp "$f" "$f.orig"
  trap 'mv "$f.orig" "$f"' EXIT
  for target in "build --bin tidepool" "test --workspace --no-run --tests"; do
    printf '\n#[allow(dead_code)]\nfn rebuild_probe_%s() -> u64 {\n    %s\n}\n' "$RANDOM" "$RANDOM" >> "$f"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    cargo $target -q 2>/dev/null
    printf "%-32s cargo %-36s %6.1f s\n" "$f" "$target" \
      "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')"
  done
  mv "$f.orig" "$f"
  trap - EXIT
done
# Leave the target folder matching the sources again.
cargo build --bin tidepool -q
