#!/usr/bin/env bash
# Transaction benchmark (issue 23): a block of 10 small INSERTs into 3 tables, then
# COMMIT, run TXNS times by pgbench over one connection, release build, side by side
# with PostgreSQL 15 (Debian) on this machine in the same run. pgbench reports the
# average latency of a whole block (BEGIN .. COMMIT) and, with -r, of each statement,
# so the cost of COMMIT (tidepool: one Delta commit per table written) shows apart.
# Both the simple and the extended (prepared) protocol. Work files: $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
TXNS=${TXNS:-200}
WORK=${WORK:-/tmp/tidepool-txn-bench}
rm -rf "$WORK" && mkdir -p "$WORK"
# shellcheck source=bench/lib.sh
source bench/lib.sh

SCRIPT="$WORK/block.sql"
{
  echo '\set id random(1, 1000000000)'
  echo 'BEGIN;'
  for i in 1 2 3 4; do echo "INSERT INTO bench.a VALUES (:id, $i, 'a');"; done
  for i in 1 2 3; do echo "INSERT INTO bench.b VALUES (:id, $i, 'b');"; done
  for i in 1 2 3; do echo "INSERT INTO bench.c VALUES (:id, $i, 'c');"; done
  echo 'COMMIT;'
} >"$SCRIPT"
# The extended-protocol phase writes tables of its own (schema benchx), so both phases
# start from empty tables: a block's COMMIT costs more as a table gains files.
SCRIPT_EXT="$WORK/block_ext.sql"
sed 's/bench\./benchx./g' "$SCRIPT" >"$SCRIPT_EXT"
DDL=()
for s in bench benchx; do
  DDL+=(-c "CREATE SCHEMA $s")
  for t in a b c; do DDL+=(-c "CREATE TABLE $s.$t (id BIGINT, n BIGINT, note TEXT)"); done
done

# Prints "simple_ms extended_ms commit_ms": average block latency in both protocols and
# the average COMMIT statement latency (simple), from pgbench.
run_pgbench() {
  local out simple extended commit
  out=$(pgbench -n -r -M simple -c 1 -t "$TXNS" -f "$SCRIPT" "$@" 2>&1)
  simple=$(echo "$out" | awk '/latency average/ {print $4}')
  commit=$(echo "$out" | awk '$NF == "COMMIT;" {print $1}')
  out=$(pgbench -n -M extended -c 1 -t "$TXNS" -f "$SCRIPT_EXT" "$@" 2>&1)
  extended=$(echo "$out" | awk '/latency average/ {print $4}')
  echo "$simple $extended $commit"
}

# --- tidepool
LAKE="$WORK/lake"
PORT=55437
start_tidepool "$LAKE" $PORT
"${TPSQL[@]}" "${DDL[@]}"
read -r tp_simple tp_extended tp_commit < <(run_pgbench -h 127.0.0.1 -p $PORT -U tidepool lake)
tp_rows=$("${TPSQL[@]}" -At -c "SELECT (SELECT count(*) FROM bench.a) + (SELECT count(*) FROM bench.b) + (SELECT count(*) FROM bench.c)")
tp_versions=$("${TPSQL[@]}" -At -c "SELECT count(*) FROM system.table_history('bench.a')")
stop_tidepool

# --- PostgreSQL, same tables and blocks
PGDATA="$WORK/pgdata"
PGPORT=55438
start_postgres "$PGDATA" $PGPORT
"${PGSQL[@]}" "${DDL[@]}"
read -r pg_simple pg_extended pg_commit < <(run_pgbench -h 127.0.0.1 -p $PGPORT -U postgres postgres)
pg_rows=$("${PGSQL[@]}" -At -c "SELECT (SELECT count(*) FROM bench.a) + (SELECT count(*) FROM bench.b) + (SELECT count(*) FROM bench.c)")

echo "== $TXNS blocks of 10 INSERTs into 3 tables + COMMIT, one connection, pgbench; tidepool $(git rev-parse --short HEAD), PostgreSQL $("${PGSQL[@]}" -At -c 'show server_version') (default settings, fsync on); $(nproc) cores"
printf '%-34s %12s %14s\n' "" "tidepool" "PostgreSQL"
printf '%-34s %12s %14s\n' "block latency, simple protocol ms" "$tp_simple" "$pg_simple"
printf '%-34s %12s %14s\n' "block latency, extended protocol ms" "$tp_extended" "$pg_extended"
printf '%-34s %12s %14s\n' "COMMIT statement ms (simple)" "$tp_commit" "$pg_commit"
printf '%-34s %12s %14s\n' "rows after (simple phase)" "$tp_rows" "$pg_rows"
echo "tidepool bench.a Delta versions: $tp_versions (one per block)"
