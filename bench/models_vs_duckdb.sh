#!/usr/bin/env bash
# Models benchmark (issue: dbt-style models), release build, one run: the fixture project
# tests/fixtures/shop over ROWS bronze orders, built by `tidepool run` and `tidepool build`,
# next to DuckDB (from PyPI) executing the same compiled SQL over the same rows as Parquet.
# Installs duckdb into .venv. Work files: $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
WORK=${WORK:-/tmp/tidepool-models-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
rm -rf "$WORK" && mkdir -p "$WORK"

cargo build --release --bin tidepool -q
BIN="$CARGO_TARGET_DIR/release/tidepool"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c "import duckdb" 2>/dev/null || .venv/bin/pip install -q duckdb

cp -r tests/fixtures/shop "$WORK/project"
P="$WORK/project"
TP=("$BIN" --config "$P/tidepool.toml" --lake "$WORK/lake")
VARS='{"min_amount": 3}'

# Bronze: ROWS orders (id, customer of 100,000, amount), as a Delta table and as Parquet.
"${TP[@]}" sql "CREATE SCHEMA bronze; CREATE TABLE bronze.orders AS
  SELECT value AS id, 'c' || CAST(value % 100000 AS VARCHAR) AS customer,
         CAST(value % 1000 AS DOUBLE) / 10.0 AS amount
  FROM generate_series(1, $ROWS)" >/dev/null
"${TP[@]}" sql "COPY (SELECT * FROM bronze.orders) TO '$WORK/orders.parquet'" >/dev/null
"${TP[@]}" compile --vars "$VARS" >/dev/null

now() { date +%s.%N; }
t0=$(now); "${TP[@]}" run --vars "$VARS" >/dev/null; t1=$(now)
"${TP[@]}" build --vars "$VARS" >/dev/null; t2=$(now)
RUN=$(printf "%.3f" "$(echo "$t1 - $t0" | bc)"); BUILD=$(printf "%.3f" "$(echo "$t2 - $t1" | bc)")

DUCK=$(.venv/bin/python - "$WORK" <<'EOF'
import sys, time, duckdb
work = sys.argv[1]
c = duckdb.connect(f"{work}/duck.db")
started = time.time()
c.execute("CREATE SCHEMA bronze; CREATE SCHEMA silver; CREATE SCHEMA gold")
c.execute(f"CREATE VIEW bronze.orders AS SELECT * FROM read_parquet('{work}/orders.parquet')")
compiled = f"{work}/project/target/compiled/sql"
for kind, name in [("VIEW", "silver/stg_orders"), ("VIEW", "silver/customers"), ("TABLE", "gold/customer_revenue")]:
    sql = open(f"{compiled}/{name}.sql").read().strip().rstrip(";")
    c.execute(f"CREATE {kind} {name.replace('/', '.')} AS {sql}")
print(f"{time.time() - started:.3f}")
EOF
)
echo "models benchmark: tests/fixtures/shop over $ROWS bronze orders (release, $(nproc) cores)"
echo "  tidepool run   (3 models, gold table written as Delta; whole process): ${RUN} s"
echo "  tidepool build (same + 8 data tests; whole process):                  ${BUILD} s"
echo "  DuckDB $(.venv/bin/python -c 'import duckdb; print(duckdb.__version__)') same compiled SQL over Parquet (table in duck.db): ${DUCK} s"
