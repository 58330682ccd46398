#!/usr/bin/env bash
# pgbench at 100 clients against tidepool and PostgreSQL 15 over the same tables
# (issue 21): s.accounts (100,000 rows: id, branch, balance, filler) and s.branches
# (100 rows), the soak test's mix: point lookups by id (weight 8), a grouped scan (1)
# and a join (1). PostgreSQL runs twice: without indexes (as the lake has none) and
# with primary keys. Prints TPS and latency percentiles (from pgbench's per-transaction
# log) for each. Then long IN lists on both (bench/in_list.py: 1,000 to 65,535 values as
# parameters and as literals). Release build; installs Debian's postgresql when missing.
# Usage: bash bench/pgbench.sh [seconds per run, default 30; 0 runs only the IN lists]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
CLIENTS=${CLIENTS:-100}
WORK=${WORK:-/tmp/tidepool-pgbench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidepool-release}
rm -rf "$WORK"; mkdir -p "$WORK"; chmod 777 "$WORK"

cargo build --release --bin tidepool -q
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
BIN="$CARGO_TARGET_DIR/release/tidepool"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/pgbench" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  PG_BIN=/usr/lib/postgresql/15/bin
fi

cat > "$WORK/point.sql" <<'EOF'
\set id random(1, 100000)
SELECT balance FROM s.accounts WHERE id = :id;
EOF
cat > "$WORK/scan.sql" <<'EOF'
SELECT branch, sum(balance) FROM s.accounts GROUP BY branch ORDER BY 2 DESC LIMIT 5;
EOF
cat > "$WORK/join.sql" <<'EOF'
\set b random(0, 99)
SELECT b.name, count(*) FROM s.accounts a JOIN s.branches b ON a.branch = b.branch WHERE b.branch = :b GROUP BY b.name;
EOF

# run NAME PORT USER DB: pgbench, then TPS and latency percentiles in milliseconds.
run() {
  local name=$1 port=$2 user=$3 db=$4
  "$PY" bench/in_list.py "$port" "$user" "$db" "$name"
  [ "$SECS" = 0 ] && return
  rm -f "$WORK"/pgbench_log.*
  local out
  out=$(cd "$WORK" && "$PG_BIN/pgbench" -n -j 2 -c "$CLIENTS" -T "$SECS" -l \
    -h 127.0.0.1 -p "$port" -U "$user" \
    -f point.sql@8 -f scan.sql@1 -f join.sql@1 "$db" 2>&1)
  local tps aborted
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  aborted=$(echo "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
  # Per-transaction log: client tx latency_us script_no time epoch_us.
  cat "$WORK"/pgbench_log.* | awk '{print $3}' | sort -n > "$WORK/lat"
  local n; n=$(wc -l < "$WORK/lat")
  pct() { sed -n "$(( ($1 * n + 99) / 100 ))p" "$WORK/lat" | awk '{printf "%.1f", $1/1000}'; }
  printf "%-28s tps %8s  p50 %7s ms  p95 %7s ms  p99 %7s ms  failed %s  (%s transactions)\n" \
    "$name" "$tps" "$(pct 50)" "$(pct 95)" "$(pct 99)" "${aborted:-?}" "$n"
}

# --- tidepool
LAKE="$WORK/lake"
"$BIN" --lake "$LAKE" sql "CREATE SCHEMA s; \
  CREATE TABLE s.accounts AS SELECT v AS id, v % 100 AS branch, CAST(v AS DOUBLE) AS balance, \
    md5(CAST(v AS VARCHAR)) AS filler FROM generate_series(1, 100000) g(v); \
  CREATE TABLE s.branches AS SELECT v AS branch, 'b' || CAST(v AS VARCHAR) AS name \
    FROM generate_series(0, 99) g(v)" >/dev/null
PORT=55481
"$BIN" --lake "$LAKE" serve --pg-listen 127.0.0.1:$PORT --http-listen 127.0.0.1:0 \
  --flight-listen 127.0.0.1:0 2>"$WORK/serve.log" &
TP=$!
PGDATA="$WORK/pgdata"
cleanup() {
  kill $TP 2>/dev/null || true
  [ -d "$PGDATA" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 100); do psql -X -h 127.0.0.1 -p $PORT -U tidepool -d lake -Atc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
echo "== pgbench -c $CLIENTS -j 2 -T $SECS, point@8 scan@1 join@1; $(nproc) cores; tidepool $(git rev-parse --short HEAD), $("$PG_BIN/postgres" --version)"
run "tidepool" $PORT tidepool lake
echo "tidepool peak RSS: $(grep VmHWM /proc/$TP/status | awk '{print int($2/1024)}') MiB"
kill $TP; wait $TP 2>/dev/null || true

# --- PostgreSQL, same rows (max_connections raised for 100 clients)
PGPORT=55482
mkdir -p "$PGDATA" && chown postgres "$PGDATA"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" \
  -o "-p $PGPORT -k /tmp -c max_connections=200" -l "$PGDATA/server.log" -w start >/dev/null
PSQL=(psql -X -q -h 127.0.0.1 -p $PGPORT -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE SCHEMA s; \
  CREATE TABLE s.accounts AS SELECT v::bigint AS id, (v % 100)::bigint AS branch, v::float8 AS balance, \
    md5(v::text) AS filler FROM generate_series(1, 100000) g(v); \
  CREATE TABLE s.branches AS SELECT v::bigint AS branch, 'b' || v AS name FROM generate_series(0, 99) g(v);"
"${PSQL[@]}" -c "VACUUM ANALYZE s.accounts" -c "VACUUM ANALYZE s.branches"
run "PostgreSQL, no indexes" $PGPORT postgres postgres
"${PSQL[@]}" -c "ALTER TABLE s.accounts ADD PRIMARY KEY (id); ALTER TABLE s.branches ADD PRIMARY KEY (branch); \
  CREATE INDEX ON s.accounts (branch); ANALYZE"
run "PostgreSQL, primary keys" $PGPORT postgres postgres
