#!/usr/bin/env bash
# DML benchmark (issue 23: UPDATE, DELETE, MERGE), release build, one run, side by side with
# PostgreSQL 15 (Debian) on this machine. The table: ROWS rows (default 10M) of
# (id BIGINT, k BIGINT, amount DOUBLE, note TEXT), written in FILES inserts of ids in
# order, so tidepool holds FILES data files clustered by id (file statistics can rule
# files out). Each statement is timed end to end through psql (connect + run):
#   full rewrite    UPDATE of every row (the cost the others are measured against)
#   delete 1% clustered   DELETE WHERE id <= ROWS/100 (one file's range)
#   update 1% clustered   UPDATE ... WHERE id in the next 1% range
#   delete 1% scattered   DELETE WHERE id % 100 = 7 (every file holds some)
#   merge 100k            MERGE of 100k source rows: 50k updates of existing ids, 50k new
#   read 1% scattered     SELECT count(*) WHERE id % 100 = 7: the read any scattered
#                         delete must do (decode every id, a division per row): its floor
#   connect only          SELECT 1: what psql's start and login add to every figure
# and both deletes, the clustered update and the MERGE again on a fresh copy with deletion
# vectors enabled (no file rewritten).
# Installs Debian's postgresql if missing. Work files: $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
FILES=${FILES:-40}
WORK=${WORK:-/tmp/tidepool-dml-bench}
rm -rf "$WORK" && mkdir -p "$WORK"
# shellcheck source=bench/lib.sh
source bench/lib.sh

PCT=$((ROWS / 100))
CHUNK=$((ROWS / FILES))
MERGE_SRC="SELECT value AS id, value % 1000 AS k, -1.0 AS amount, 'merged' AS note FROM generate_series($((ROWS - 50000 + 1)), $((ROWS + 50000))) AS g(value)"
STATEMENTS=(
  "full rewrite|UPDATE bench.t SET amount = amount + 1"
  "delete 1% clustered|DELETE FROM bench.t WHERE id <= $PCT"
  "update 1% clustered|UPDATE bench.t SET note = 'changed' WHERE id > $PCT AND id <= $((2 * PCT))"
  "delete 1% scattered|DELETE FROM bench.t WHERE id % 100 = 7"
  "merge 100k (50k upd)|MERGE INTO bench.t AS t USING ($MERGE_SRC) AS s ON t.id = s.id WHEN MATCHED THEN UPDATE SET amount = s.amount, note = s.note WHEN NOT MATCHED THEN INSERT (id, k, amount, note) VALUES (s.id, s.k, s.amount, s.note)"
  "read 1% scattered|SELECT count(*) FROM bench.t WHERE id % 100 = 7"
  "connect only|SELECT 1"
)

# Runs "$@" (a psql command line) and prints the wall time in milliseconds.
timed() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

declare -A TP_MS PG_MS

# --- tidepool
LAKE="$WORK/lake"
PORT=55433
start_tidepool "$LAKE" $PORT
"${TPSQL[@]}" -c "CREATE SCHEMA bench" \
  -c "CREATE TABLE bench.t (id BIGINT, k BIGINT, amount DOUBLE PRECISION, note TEXT)"
load_ms=$(
  t0=$(date +%s%N)
  for i in $(seq 0 $((FILES - 1))); do
    "${TPSQL[@]}" -c "INSERT INTO bench.t SELECT value AS id, value % 1000 AS k, value * 0.5 AS amount, 'note ' || value AS note FROM generate_series($((i * CHUNK + 1)), $(((i + 1) * CHUNK))) AS g(value)"
  done
  echo $((($(date +%s%N) - t0) / 1000000))
)
echo "== tidepool $(git rev-parse --short HEAD): $ROWS rows in $FILES files, loaded in ${load_ms} ms, $(nproc) cores"
for s in "${STATEMENTS[@]}"; do
  label=${s%%|*}
  TP_MS[$label]=$(timed "${TPSQL[@]}" -c "${s#*|}")
done
echo "rows after: $("${TPSQL[@]}" -At -c 'SELECT count(*) FROM bench.t')"
# The same deletes on a fresh copy with deletion vectors enabled: rows are marked, no
# file is rewritten.
"${TPSQL[@]}" -c "CREATE TABLE bench.d (id BIGINT, k BIGINT, amount DOUBLE PRECISION, note TEXT)"
for i in $(seq 0 $((FILES - 1))); do
  "${TPSQL[@]}" -c "INSERT INTO bench.d SELECT value AS id, value % 1000 AS k, value * 0.5 AS amount, 'note ' || value AS note FROM generate_series($((i * CHUNK + 1)), $(((i + 1) * CHUNK))) AS g(value)"
done
"${TPSQL[@]}" -c "ALTER TABLE bench.d SET ('delta.enableDeletionVectors' = true)"
TP_MS["delete 1% clustered, DV"]=$(timed "${TPSQL[@]}" -c "DELETE FROM bench.d WHERE id <= $PCT")
TP_MS["delete 1% scattered, DV"]=$(timed "${TPSQL[@]}" -c "DELETE FROM bench.d WHERE id % 100 = 7")
TP_MS["update 1% clustered, DV"]=$(timed "${TPSQL[@]}" -c "UPDATE bench.d SET note = 'changed' WHERE id > $PCT AND id <= $((2 * PCT))")
merge=${STATEMENTS[4]#*|}
TP_MS["merge 100k (50k upd), DV"]=$(timed "${TPSQL[@]}" -c "${merge//bench.t/bench.d}")
echo "rows after (deletion vectors): $("${TPSQL[@]}" -At -c 'SELECT count(*) FROM bench.d')"
stop_tidepool

# --- PostgreSQL, same table and statements
PGDATA="$WORK/pgdata"
PGPORT=55434
start_postgres "$PGDATA" $PGPORT
"${PGSQL[@]}" -c "CREATE SCHEMA bench" \
  -c "CREATE TABLE bench.t AS SELECT value AS id, value % 1000 AS k, value * 0.5::float8 AS amount, 'note ' || value AS note FROM generate_series(1::bigint, $ROWS) AS g(value)" \
  -c "CREATE UNIQUE INDEX ON bench.t (id)" -c "VACUUM ANALYZE bench.t"
for s in "${STATEMENTS[@]}"; do
  label=${s%%|*}
  PG_MS[$label]=$(timed "${PGSQL[@]}" -c "${s#*|}")
done
echo "== PostgreSQL $("${PGSQL[@]}" -At -c 'show server_version') (unique index on id, default settings)"
echo "rows after: $("${PGSQL[@]}" -At -c 'SELECT count(*) FROM bench.t')"

full_tp=${TP_MS["full rewrite"]}
printf '%-22s %12s %10s %14s\n' "statement" "tidepool ms" "% rewrite" "PostgreSQL ms"
for s in "${STATEMENTS[@]}"; do
  label=${s%%|*}
  printf '%-22s %12s %9s%% %14s\n' "$label" "${TP_MS[$label]}" \
    "$((100 * ${TP_MS[$label]} / full_tp))" "${PG_MS[$label]}"
done
for label in "delete 1% clustered" "delete 1% scattered" "update 1% clustered" "merge 100k (50k upd)"; do
  printf '%-22s %12s %9s%% %14s\n' "$label, DV" "${TP_MS["$label, DV"]}" \
    "$((100 * ${TP_MS["$label, DV"]} / full_tp))" "${PG_MS[$label]}"
done
