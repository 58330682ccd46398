#!/usr/bin/env bash
# COPY FROM csv of TPC-H SF1 lineitem with two tidepool binaries, runs interleaved
# (A, B, A, B, ...), so a noisy machine's drift hits both alike. Each run starts a fresh
# server on a fresh lake, creates the table and times psql's \copy of the CSV that
# bench/copy.sh generates (run that first).
#   bash bench/copy_ab.sh <binary A> <binary B> [runs, default 3]
set -euo pipefail
A=$1 B=$2 RUNS=${3:-3}
WORK=${WORK:-/tmp/tidepool-copy-bench}
CSV="$WORK/lineitem.csv"
[ -f "$CSV" ] || { echo "no $CSV: run bench/copy.sh first" >&2; exit 1; }
DDL="(l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INT, l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), l_tax DECIMAL(15,2), l_returnflag TEXT, l_linestatus TEXT, l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, l_shipinstruct TEXT, l_shipmode TEXT, l_comment TEXT)"
ROWS=6001215

run() {
  local bin=$1 port=55491 lake
  lake=$(mktemp -d)
  "$bin" serve --lake "$lake" --pg-listen 127.0.0.1:$port --http-listen 127.0.0.1:55492 \
    --flight-listen 127.0.0.1:55493 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p $port && break; sleep 0.2; done
  local sql=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $port -U tidepool -d lake)
  "${sql[@]}" -c "CREATE SCHEMA tpch" -c "CREATE TABLE tpch.lineitem $DDL"
  local t0 ms
  t0=$(date +%s%N)
  "${sql[@]}" -c "\\copy tpch.lineitem FROM '$CSV' WITH (FORMAT csv, HEADER)"
  ms=$((($(date +%s%N) - t0) / 1000000))
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$lake"
  printf '%-40s %7d ms %9d rows/s\n' "$bin" "$ms" $((ROWS * 1000 / ms))
}

for _ in $(seq "$RUNS"); do
  run "$A"
  run "$B"
done
