#!/usr/bin/env bash
# COPY benchmark (issue 24), release build, one run, side by side with PostgreSQL 15
# (Debian) on this machine, TPC-H SF1 lineitem (6,001,215 rows x 16 columns):
#   copy in csv       psql: COPY lineitem FROM STDIN (FORMAT csv, HEADER) of tpchgen's CSV,
#                     into an empty table, committed when psql returns
#   copy out binary   psql: COPY lineitem TO STDOUT (FORMAT binary) > /dev/null
#   copy out csv      psql: COPY lineitem TO STDOUT (FORMAT csv) > /dev/null
#   copy out text     psql: COPY lineitem TO STDOUT > /dev/null
#   adbc read         adbc-driver-postgresql (Python): SELECT * FROM lineitem into a pyarrow
#                     table (the driver reads it with COPY ... TO STDOUT (FORMAT binary))
#   adbc ingest       adbc_ingest of lineitem from a pyarrow table (bench/adbc_ingest.py):
#                     tidepool over Flight SQL (CommandStatementIngest, one Delta commit),
#                     PostgreSQL with its ADBC driver (COPY FROM STDIN binary); ingest and
#                     commit only, the CSV is read into memory first
# Each figure is wall time through the client (connect included), as rows/s.
# Installs what it needs (tpchgen-cli into .venv, Debian's postgresql). Work files: $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/tidepool-copy-bench}
mkdir -p "$WORK"
# shellcheck source=bench/lib.sh
source bench/lib.sh

[ -x .venv/bin/tpchgen-cli ] || { python3 -m venv .venv && .venv/bin/pip install -q tpchgen-cli; }
[ -f "$WORK/lineitem.csv" ] || .venv/bin/tpchgen-cli csv -s 1 --tables=lineitem --output-dir="$WORK"
ROWS=6001215
DDL="(l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INT, l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), l_tax DECIMAL(15,2), l_returnflag TEXT, l_linestatus TEXT, l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, l_shipinstruct TEXT, l_shipmode TEXT, l_comment TEXT)"

# Runs "$@" and prints the wall time in milliseconds.
timed() {
  local t0
  t0=$(date +%s%N)
  "$@" >/dev/null
  echo $((($(date +%s%N) - t0) / 1000000))
}

ADBC_READ='import sys, adbc_driver_postgresql.dbapi as d
with d.connect(sys.argv[1]) as c, c.cursor() as cur:
    cur.execute("SELECT * FROM tpch.lineitem")
    n = cur.fetch_arrow_table().num_rows
    assert n == int(sys.argv[2]), n'
[ -x .venv/bin/python ] && .venv/bin/python -c 'import adbc_driver_postgresql' 2>/dev/null ||
  .venv/bin/pip install -q adbc-driver-postgresql==1.13.0 pyarrow
.venv/bin/python -c 'import adbc_driver_flightsql' 2>/dev/null ||
  .venv/bin/pip install -q adbc-driver-flightsql==1.13.0

declare -A TP_MS PG_MS
run_all() {
  local -n into=$1
  local uri=$2 ingest_kind=$3 ingest_uri=$4
  shift 4
  local sql=("$@")
  "${sql[@]}" -c "CREATE SCHEMA IF NOT EXISTS tpch" -c "DROP TABLE IF EXISTS tpch.lineitem" \
    -c "CREATE TABLE tpch.lineitem $DDL"
  into["copy in csv"]=$(timed "${sql[@]}" -c "\\copy tpch.lineitem FROM '$WORK/lineitem.csv' WITH (FORMAT csv, HEADER)")
  local n
  n=$("${sql[@]}" -At -c "SELECT count(*) FROM tpch.lineitem")
  [ "$n" = "$ROWS" ] || { echo "expected $ROWS rows, found $n" >&2; exit 1; }
  into["copy out binary"]=$(timed "${sql[@]}" -c "COPY tpch.lineitem TO STDOUT (FORMAT binary)")
  into["copy out csv"]=$(timed "${sql[@]}" -c "COPY tpch.lineitem TO STDOUT (FORMAT csv)")
  into["copy out text"]=$(timed "${sql[@]}" -c "COPY tpch.lineitem TO STDOUT")
  into["adbc read"]=$(timed .venv/bin/python -c "$ADBC_READ" "$uri" "$ROWS")
  "${sql[@]}" -c "DROP TABLE IF EXISTS tpch.lineitem_in"
  into["adbc ingest"]=$(.venv/bin/python bench/adbc_ingest.py "$ingest_kind" "$ingest_uri" \
    "$WORK/lineitem.csv" "$ROWS")
}

start_tidepool "$WORK/lake" 55443 55445
rm -rf "$WORK/lake/tpch"
run_all TP_MS "postgresql://tidepool@127.0.0.1:55443/lake" flight grpc://127.0.0.1:55445 \
  "${TPSQL[@]}"
echo "== tidepool $(git rev-parse --short HEAD), $(nproc) cores"
stop_tidepool

chmod o+rx "$WORK"; chmod o+r "$WORK/lineitem.csv"
rm -rf "$WORK/pgdata"
start_postgres "$WORK/pgdata" 55444
run_all PG_MS "postgresql://postgres@127.0.0.1:55444/postgres" postgres \
  "postgresql://postgres@127.0.0.1:55444/postgres" "${PGSQL[@]}"
echo "== PostgreSQL $("${PGSQL[@]}" -At -c 'show server_version') (default settings, no index)"

printf '%-16s %12s %14s %14s %16s %8s\n' "statement" "tidepool ms" "tidepool rows/s" "PostgreSQL ms" "PostgreSQL rows/s" "ratio"
for label in "copy in csv" "copy out binary" "copy out csv" "copy out text" "adbc read" "adbc ingest"; do
  tp=${TP_MS[$label]}
  pg=${PG_MS[$label]}
  printf '%-16s %12s %14s %14s %16s %8s\n' "$label" "$tp" "$((ROWS * 1000 / tp))" "$pg" \
    "$((ROWS * 1000 / pg))" "$(awk "BEGIN { printf \"%.2f\", $pg / $tp }")"
done
