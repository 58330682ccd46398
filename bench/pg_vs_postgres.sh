#!/usr/bin/env bash
# Benchmarks of the Postgres server (issue: lakehouse core), release build, one run each:
#  1. streaming TPC-H SF1 lineitem (6,001,215 rows x 16 columns) to tokio-postgres, from
#     tidepool and from PostgreSQL 15 on this machine, binary (extended) and text (simple);
#  2. start to first answered query with 100 Delta tables in the lake;
#  3. new SCRAM-authenticated connection + SELECT 1, median of 200.
# Installs what it needs (tpchgen-cli in .venv, Debian's postgresql). Work files: $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/tidepool-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidepool-release}
mkdir -p "$WORK"

cargo build --release --bin tidepool --examples -q
BIN="$CARGO_TARGET_DIR/release/tidepool"
EX="$CARGO_TARGET_DIR/release/examples"

[ -x .venv/bin/tpchgen-cli ] || { python3 -m venv .venv && .venv/bin/pip install -q tpchgen-cli; }
if [ ! -f "$WORK/lineitem.parquet" ]; then
  .venv/bin/tpchgen-cli parquet -s 1 --tables=lineitem --output-dir="$WORK"
  .venv/bin/tpchgen-cli csv -s 1 --tables=lineitem --output-dir="$WORK"
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

# --- tidepool: lake with lineitem as a Delta table
LAKE="$WORK/lake"
if [ ! -d "$LAKE/tpch/lineitem/_delta_log" ]; then
  rm -rf "$LAKE"
  "$BIN" --lake "$LAKE" sql "CREATE SCHEMA tpch; CREATE TABLE tpch.lineitem AS SELECT * FROM read_parquet('$WORK/lineitem.parquet')"
fi
PORT=55433
"$BIN" --lake "$LAKE" serve --pg-listen 127.0.0.1:$PORT --http-listen 127.0.0.1:0 --flight-listen 127.0.0.1:0 2>"$WORK/serve.log" &
TP=$!
trap 'kill $TP 2>/dev/null || true' EXIT
for _ in $(seq 100); do "$EX/pg_connect" "host=127.0.0.1 port=$PORT user=tidepool dbname=lake" 1 >/dev/null 2>&1 && break; sleep 0.1; done
echo "== tidepool $(git rev-parse --short HEAD), lineitem SF1 over the Postgres protocol"
"$EX/pg_fetch" "host=127.0.0.1 port=$PORT user=tidepool dbname=lake" "SELECT * FROM tpch.lineitem"
"$EX/pg_fetch" "host=127.0.0.1 port=$PORT user=tidepool dbname=lake" "SELECT * FROM tpch.lineitem" --text
echo "tidepool peak RSS: $(grep VmHWM /proc/$TP/status | awk '{print int($2/1024)}') MiB"
kill $TP; wait $TP 2>/dev/null || true

# --- PostgreSQL on the same machine, same table
PGDATA="$WORK/pgdata"
PGPORT=55434
if [ ! -d "$PGDATA" ]; then
  mkdir -p "$PGDATA" && chown postgres "$PGDATA"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres >/dev/null
fi
chmod o+rx "$WORK"; chmod o+r "$WORK/lineitem.csv"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -o "-p $PGPORT -k /tmp" -l "$PGDATA/server.log" -w start >/dev/null
trap 'kill $TP 2>/dev/null || true; runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null || true' EXIT
PSQL=(psql -X -q -h 127.0.0.1 -p $PGPORT -U postgres -d postgres)
if [ "$("${PSQL[@]}" -At -c "select count(*) from pg_tables where tablename='lineitem'")" = "0" ]; then
  "${PSQL[@]}" -c "CREATE TABLE lineitem (l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INT, l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), l_tax DECIMAL(15,2), l_returnflag TEXT, l_linestatus TEXT, l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, l_shipinstruct TEXT, l_shipmode TEXT, l_comment TEXT)"
  "${PSQL[@]}" -c "\\copy lineitem FROM '$WORK/lineitem.csv' WITH (FORMAT csv, HEADER)"
  "${PSQL[@]}" -c "VACUUM ANALYZE lineitem"
fi
echo "== PostgreSQL $("${PSQL[@]}" -At -c 'show server_version'), same table"
"$EX/pg_fetch" "host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres" "SELECT * FROM lineitem"
"$EX/pg_fetch" "host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres" "SELECT * FROM lineitem" --text
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null
trap 'kill $TP 2>/dev/null || true' EXIT

# --- start time with 100 Delta tables
LAKE100="$WORK/lake100"
if [ ! -d "$LAKE100/s/t99/_delta_log" ]; then
  rm -rf "$LAKE100"
  SQL="CREATE SCHEMA s;"
  for i in $(seq 0 99); do SQL="$SQL CREATE TABLE s.t$i AS SELECT $i AS id, 'row $i' AS name;"; done
  "$BIN" --lake "$LAKE100" sql "$SQL" >/dev/null
fi
echo "== start with 100 Delta tables"
"$EX/startup" "$BIN" "$LAKE100" 7

# --- SCRAM connect + SELECT 1
export BENCH_PW=bench-secret
cat > "$WORK/scram.toml" <<TOML
[lake]
root = "$LAKE100"
[postgres]
listen = "127.0.0.1:$PORT"
[[users]]
name = "bench"
password_env = "BENCH_PW"
TOML
"$BIN" --config "$WORK/scram.toml" serve 2>"$WORK/serve-scram.log" &
TP=$!
for _ in $(seq 100); do "$EX/pg_connect" "host=127.0.0.1 port=$PORT user=bench password=$BENCH_PW dbname=lake" 1 >/dev/null 2>&1 && break; sleep 0.1; done
echo "== SCRAM-SHA-256 connection + SELECT 1"
"$EX/pg_connect" "host=127.0.0.1 port=$PORT user=bench password=$BENCH_PW dbname=lake" 200
kill $TP; wait $TP 2>/dev/null || true
