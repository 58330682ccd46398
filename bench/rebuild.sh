#!/usr/bin/env bash
# Incremental dev rebuild times (issue 22): touch one file in the Postgres adapter, in
# models and in engine, then time `cargo build --bin tidepool` and `cargo test --no-run`
# (lib tests and integration tests). Run on a warm target folder; prints seconds.
# Usage: bash bench/rebuild.sh [file ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidepool-target}
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(src/protocol/pg/handler.rs src/models/render.rs src/engine/functions.rs)
fi
cargo build --bin tidepool -q && cargo test --no-run --tests -q 2>/dev/null
echo "== incremental dev rebuilds, $(nproc) cores, $(git rev-parse --short HEAD)"
for f in "${files[@]}"; do
  for target in "build --bin tidepool" "test --no-run --tests"; do
    touch "$f"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    cargo $target -q 2>/dev/null
    printf "%-40s cargo %-24s %6.1f s\n" "$f" "$target" "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')"
  done
done
