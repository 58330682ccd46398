#!/usr/bin/env bash
# TPC-H benchmark (issue 25), release build, one run: the 22 queries on DuckDB and raw
# DataFusion over Parquet files, and on tidepool over Postgres and Flight SQL over the
# same data loaded as Delta tables (bench/tpch.py does the timing and prints the table).
#   bash bench/tpch.sh [--sf 1|10] [--runs N] [--only 1,6,15] [--set name=value ...]
# (--set: a session setting of tidepool's connections, e.g.
#  --set datafusion.execution.parquet.pushdown_filters=true; --memory-limit 4096: MiB for
#  each engine, tidepool's through TIDEPOOL_MEMORY_LIMIT)
# Data: tpchgen-cli's Parquet (one file per table) in $WORK/sf<N>/parquet, generated once;
# the tidepool lake in $WORK/sf<N>/lake-<layout>, loaded once (`CREATE TABLE t AS SELECT *
# FROM read_parquet(...)`). --layout sorted (the default) loads lineitem `ORDER BY
# l_shipdate` and orders `ORDER BY o_orderdate`, as a user clusters a fact table on its
# date; --layout as-generated keeps tpchgen's order. DuckDB and DataFusion always read
# tpchgen's files as generated; --df-on-lake adds a fifth engine, raw DataFusion over the
# Parquet files of the tidepool lake (what tidepool itself reads). --cluster (issue 26)
# also starts `tidepool scheduler` and two `tidepool executor`s on this machine, serves
# with `[cluster] scheduler`, and runs tidepool over Postgres twice: "tidepool pg" with
# `SET tidepool.distributed = off` (the server alone) and "tidepool cluster" with it on
# (plans sent to Ballista); every cluster result is compared with the single-node one.
# Installs what it needs into .venv (tpchgen-cli, duckdb
# and its tpch extension, datafusion, psycopg, the ADBC Flight SQL driver).
set -euo pipefail
cd "$(dirname "$0")/.."
SF=1
RUNS=2
ONLY=""
SETS=()
MEM_MIB=0
LAYOUT=sorted
DF_ON_LAKE=0
CLUSTER=0
while [ $# -gt 0 ]; do
  case $1 in
    --sf) SF=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    --memory-limit) MEM_MIB=$2; shift 2 ;;
    --layout) LAYOUT=$2; shift 2 ;;
    --df-on-lake) DF_ON_LAKE=1; shift ;;
    --cluster) CLUSTER=1; shift ;;
    *) echo "usage: bash bench/tpch.sh [--sf 1|10] [--runs N] [--only 1,6,15] [--set name=value] [--memory-limit MiB] [--layout sorted|as-generated] [--df-on-lake] [--cluster]" >&2; exit 2 ;;
  esac
done
case $LAYOUT in
  sorted|as-generated) ;;
  *) echo "--layout sorted|as-generated" >&2; exit 2 ;;
esac
WORK=${WORK:-/tmp/tidepool-tpch-bench}/sf$SF
mkdir -p "$WORK"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidepool-release}
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin tidepool -q
  BIN="$CARGO_TARGET_DIR/release/tidepool"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c 'import tpchgen_cli' 2>/dev/null || [ -x .venv/bin/tpchgen-cli ] ||
  .venv/bin/pip install -q tpchgen-cli==4.0.0
.venv/bin/python -c 'import duckdb, duckdb_extension_tpch, datafusion, psycopg, adbc_driver_flightsql' 2>/dev/null ||
  .venv/bin/pip install -q duckdb==1.5.5 duckdb-extension-tpch==1.5.5 datafusion==55.0.0 \
    'psycopg[binary]==3.3.9' adbc-driver-flightsql==1.13.0 pyarrow

TABLES="nation region part supplier partsupp customer orders lineitem"
if [ ! -f "$WORK/parquet/lineitem.parquet" ]; then
  rm -rf "$WORK/parquet"
  .venv/bin/tpchgen-cli parquet -s "$SF" --output-dir="$WORK/parquet"
fi

PG_PORT=${PG_PORT:-55440}
FLIGHT_PORT=${FLIGHT_PORT:-55441}
if [ "$MEM_MIB" -gt 0 ]; then export TIDEPOOL_MEMORY_LIMIT="${MEM_MIB}MiB"; fi
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
CONFIG=()
CLUSTER_ARG=()
if [ "$CLUSTER" = 1 ]; then
  # The scheduler prints its df:// address on stdout once it listens.
  "$BIN" --lake "$WORK/lake-$LAYOUT" scheduler --listen 127.0.0.1:0 >"$WORK/scheduler.addr" 2>"$WORK/scheduler.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$WORK/scheduler.addr" ] && break; sleep 0.1; done
  SCHEDULER=$(head -1 "$WORK/scheduler.addr")
  for e in 1 2; do
    "$BIN" --lake "$WORK/lake-$LAYOUT" executor --scheduler "$SCHEDULER" --slots 2 \
      --work-dir "$WORK/executor-$e" 2>"$WORK/executor-$e.log" &
    PIDS+=($!)
  done
  printf '[cluster]\nscheduler = "%s"\n' "$SCHEDULER" >"$WORK/cluster.toml"
  CONFIG=(--config "$WORK/cluster.toml")
  CLUSTER_ARG=(--cluster)
fi
"$BIN" "${CONFIG[@]}" --lake "$WORK/lake-$LAYOUT" serve --pg-listen "127.0.0.1:$PG_PORT" --http-listen 127.0.0.1:0 \
  --flight-listen "127.0.0.1:$FLIGHT_PORT" 2>"$WORK/serve.log" &
TP=$!
PIDS+=($TP)
TPSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U tidepool -d lake)
for _ in $(seq 100); do "${TPSQL[@]}" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
for t in $TABLES; do
  if [ -z "$("${TPSQL[@]}" -At -c "SELECT 1 FROM information_schema.tables WHERE table_schema = 'public' AND table_name = '$t'")" ]; then
    order=""
    if [ "$LAYOUT" = sorted ]; then
      case $t in lineitem) order=" ORDER BY l_shipdate" ;; orders) order=" ORDER BY o_orderdate" ;; esac
    fi
    echo "loading $t$order"
    "${TPSQL[@]}" -c "CREATE TABLE public.$t AS SELECT * FROM read_parquet('$WORK/parquet/$t.parquet')$order"
  fi
done

echo "TPC-H SF$SF, best of $RUNS rounds after a warm-up, ms; tidepool $("$BIN" --version 2>/dev/null || echo "$BIN") on a $LAYOUT lake, $(nproc) cores${SETS[*]:+; tidepool sessions: ${SETS[*]}}$([ "$MEM_MIB" -gt 0 ] && echo "; memory limit ${MEM_MIB} MiB each")"
.venv/bin/python bench/tpch.py --parquet "$WORK/parquet" --pg-port "$PG_PORT" \
  --flight-port "$FLIGHT_PORT" --runs "$RUNS" ${ONLY:+--only "$ONLY"} "${SETS[@]}" "${CLUSTER_ARG[@]}" --memory-limit $((MEM_MIB << 20)) \
  $([ "$DF_ON_LAKE" = 1 ] && echo --lake "$WORK/lake-$LAYOUT")
echo "tidepool peak RSS: $(grep VmHWM "/proc/$TP/status" | awk '{print int($2/1024)}') MiB"
if [ "$CLUSTER" = 1 ]; then
  for i in 0 1 2; do
    echo "$(sed -n "$((i + 1))p" <<<"scheduler
executor 1
executor 2") peak RSS: $(grep VmHWM "/proc/${PIDS[$i]}/status" | awk '{print int($2/1024)}') MiB"
  done
fi
