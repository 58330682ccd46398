#!/usr/bin/env bash
# Flight SQL benchmark (issue: Arrow Flight SQL server), release build, one server, one run:
# TPC-H SF1 lineitem (6,001,215 rows x 16 columns) fetched with `SELECT * FROM tpch.lineitem`
#  1. over Flight SQL with the Rust arrow-flight client (examples/flight_fetch.rs),
#  2. over Flight SQL with the Python ADBC driver (bench/flight_fetch.py),
#  3. over the Postgres protocol with tokio-postgres, binary and text (examples/pg_fetch.rs),
# each three times, side by side. Installs what it needs (tpchgen-cli, adbc into .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/tidepool-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidepool-release}
mkdir -p "$WORK"

cargo build --release --bin tidepool --examples -q
BIN="$CARGO_TARGET_DIR/release/tidepool"
EX="$CARGO_TARGET_DIR/release/examples"

[ -x .venv/bin/python ] || python3 -m venv .venv
[ -x .venv/bin/tpchgen-cli ] || .venv/bin/pip install -q tpchgen-cli
.venv/bin/python -c 'import adbc_driver_flightsql' 2>/dev/null ||
  .venv/bin/pip install -q adbc-driver-flightsql adbc-driver-manager pyarrow
[ -f "$WORK/lineitem.parquet" ] ||
  .venv/bin/tpchgen-cli parquet -s 1 --tables=lineitem --output-dir="$WORK"

LAKE="$WORK/lake"
if [ ! -d "$LAKE/tpch/lineitem/_delta_log" ]; then
  rm -rf "$LAKE"
  "$BIN" --lake "$LAKE" sql "CREATE SCHEMA tpch; CREATE TABLE tpch.lineitem AS SELECT * FROM read_parquet('$WORK/lineitem.parquet')"
fi
PG=55433
FL=55051
"$BIN" --lake "$LAKE" serve --pg-listen 127.0.0.1:$PG --flight-listen 127.0.0.1:$FL \
  --http-listen 127.0.0.1:0 2>"$WORK/serve-flight.log" &
TP=$!
trap 'kill $TP 2>/dev/null || true' EXIT
for _ in $(seq 100); do "$EX/pg_connect" "host=127.0.0.1 port=$PG user=tidepool dbname=lake" 1 >/dev/null 2>&1 && break; sleep 0.1; done
Q="SELECT * FROM tpch.lineitem"
echo "== tidepool $(git rev-parse --short HEAD), lineitem SF1, $(nproc) cores"
echo "-- Flight SQL, Rust arrow-flight client"
"$EX/flight_fetch" "grpc://127.0.0.1:$FL" "$Q" 3
echo "-- Flight SQL, Python ADBC driver"
.venv/bin/python bench/flight_fetch.py "grpc://127.0.0.1:$FL" "$Q" 3
echo "-- Postgres protocol, tokio-postgres"
for _ in 1 2 3; do "$EX/pg_fetch" "host=127.0.0.1 port=$PG user=tidepool dbname=lake" "$Q"; done
for _ in 1 2 3; do "$EX/pg_fetch" "host=127.0.0.1 port=$PG user=tidepool dbname=lake" "$Q" --text; done
echo "tidepool peak RSS: $(grep VmHWM /proc/$TP/status | awk '{print int($2/1024)}') MiB"
