"""Every table tidepool writes, read straight from the lake by other engines: the
`deltalake` Python package (to_pyarrow_table), polars.read_delta and DuckDB's delta
extension (delta_scan), each compared row for row with what tidepool answers over the
Postgres protocol. Then polars reads over the wire with connectorx (its default binary
protocol and cursor/simple) and ADBC.

The script writes tables by every path users have (CREATE TABLE AS with row_number(),
CREATE TABLE + INSERT, COPY FROM STDIN, UPDATE / DELETE / MERGE, ALTER TABLE ADD COLUMN,
a transaction, Flight SQL bulk ingest) next to the models tests/integration/lake_readers.rs
built (table, incremental append / merge / delete+insert, streaming), then reads every
Delta table under the lake.

Usage: lake_readers.py HOST PORT USER PASSWORD LAKE_DIR FLIGHT_URI
Prints "<reader>: ok" per reader; exits non-zero with the failing check otherwise.
"""

import datetime
import decimal
import glob
import os
import sys

HOST, PORT, USER, PASSWORD, LAKE, FLIGHT = sys.argv[1:7]
PORT = int(PORT)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def connect():
    import psycopg

    return psycopg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname="lake", autocommit=True)


def write_tables():
    with connect() as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS rd")
        c.execute(
            "CREATE TABLE rd.ctas AS SELECT v AS id, row_number() OVER (ORDER BY v DESC) AS rn, "
            "rank() OVER (ORDER BY v % 3) AS rk, 'n' || v AS name, "
            "CAST(v AS NUMERIC(10,2)) / 4 AS amount, DATE '2024-01-01' + CAST(v AS INT) AS day, "
            "CAST(to_timestamp(1704067200 + v) AS TIMESTAMP) AS at, v % 2 = 0 AS even "
            "FROM generate_series(1, 500) AS g(v)"
        )
        c.execute(
            "CREATE TABLE rd.typed (id BIGINT NOT NULL, small SMALLINT, i INT, name TEXT, "
            "amount NUMERIC(12,3), x DOUBLE PRECISION, r REAL, day DATE, at TIMESTAMP, "
            "atz TIMESTAMPTZ, ok BOOLEAN)"
        )
        c.execute(
            "INSERT INTO rd.typed VALUES (1, 1, 10, 'a', 1.5, 0.25, 0.5, DATE '2024-02-29', "
            "TIMESTAMP '2024-02-29 12:00:00.123456', TIMESTAMPTZ '2024-02-29 12:00:00+02', true), "
            "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        )
        c.execute("INSERT INTO rd.typed (id, name) SELECT v, 'gen' || v FROM generate_series(3, 100) AS g(v)")
        with c.cursor().copy("COPY rd.typed (id, name, amount, day) FROM STDIN (FORMAT csv)") as copy:
            for i in range(101, 1101):
                copy.write(f"{i},copied {i},{i}.125,2023-12-{1 + i % 28:02d}\n")
        # Rewrites: UPDATE, DELETE and MERGE on a table without deletion vectors.
        c.execute("UPDATE rd.typed SET name = 'updated' WHERE id % 10 = 0")
        c.execute("DELETE FROM rd.typed WHERE id % 7 = 0")
        c.execute(
            "MERGE INTO rd.typed t USING (SELECT v AS id FROM generate_series(1095, 1105) AS g(v)) s "
            "ON t.id = s.id WHEN MATCHED THEN UPDATE SET ok = false "
            "WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, 'merged')"
        )
        c.execute("ALTER TABLE rd.typed ADD COLUMN extra TEXT")
        c.execute("UPDATE rd.typed SET extra = 'x' WHERE id < 5")
        # A transaction: one commit of several statements.
        c.execute("CREATE TABLE rd.txn (id BIGINT, note TEXT)")
        c.execute("BEGIN")
        c.execute("INSERT INTO rd.txn VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        c.execute("DELETE FROM rd.txn WHERE id = 2")
        c.execute("INSERT INTO rd.txn SELECT v, 'v' || v FROM generate_series(10, 20) AS g(v)")
        c.execute("COMMIT")
        # A table whose owner asked for deletion vectors.
        c.execute("CREATE TABLE rd.dv AS SELECT v AS id, 'r' || v AS name FROM generate_series(1, 1000) AS g(v)")
        c.execute("ALTER TABLE rd.dv SET ('delta.enableDeletionVectors' = true)")
        c.execute("DELETE FROM rd.dv WHERE id % 3 = 0")
        c.execute("UPDATE rd.dv SET name = 'u' WHERE id % 5 = 0")

    import adbc_driver_flightsql.dbapi as flight_sql
    import pyarrow as pa

    with flight_sql.connect(FLIGHT, db_kwargs={"username": USER, "password": PASSWORD}) as conn:
        with conn.cursor() as cur:
            data = pa.table({
                "id": pa.array(range(300), pa.uint32()),
                "big": pa.array(range(300), pa.uint64()),
                "name": pa.array([f"i{i}" for i in range(300)], pa.large_string()),
                "at": pa.array([datetime.datetime(2024, 1, 1, 0, 0, i % 60) for i in range(300)], pa.timestamp("ns")),
            })
            cur.adbc_ingest("ingested", data, mode="create", db_schema_name="rd")
            cur.adbc_ingest("ingested", data.slice(0, 50), mode="append", db_schema_name="rd")


def norm(v):
    """One value as every reader gives it: instants in UTC without a zone, decimals
    exact, floats as floats."""
    if isinstance(v, datetime.datetime) and v.tzinfo is not None:
        return v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    if isinstance(v, decimal.Decimal):
        return v.normalize()
    return v


def rows_of(records):
    return sorted((tuple(norm(v) for v in r) for r in records), key=repr)


def tables():
    """(schema, table) of every Delta table under the lake."""
    found = []
    for log in glob.glob(os.path.join(LAKE, "[!_]*", "*", "_delta_log")):
        table_dir = os.path.dirname(log)
        found.append((os.path.basename(os.path.dirname(table_dir)), os.path.basename(table_dir)))
    return sorted(found)


def main():
    write_tables()
    import duckdb
    import duckdb_extension_delta as delta_ext
    import polars as pl
    import pyarrow as pa
    from deltalake import DeltaTable

    ext = glob.glob(os.path.join(os.path.dirname(delta_ext.__file__), "**/*.duckdb_extension"), recursive=True)
    duck = duckdb.connect(config={"allow_unsigned_extensions": True})
    duck.execute(f"LOAD '{ext[0]}'")

    listed = tables()
    expected = {("rd", t) for t in ("ctas", "typed", "txn", "dv", "ingested")} | {
        ("silver", t) for t in ("latest_merge", "latest_delete_insert", "all_versions", "order_stream")
    }
    check(expected <= set(listed), f"tables in the lake: {listed}")
    seen = {"deltalake": 0, "polars": 0, "duckdb": 0}
    with connect() as c:
        for schema, table in listed:
            path = os.path.join(LAKE, schema, table)
            cur = c.execute(f'SELECT * FROM "{schema}"."{table}"')
            names = [d.name for d in cur.description]
            want = rows_of(cur.fetchall())
            select = ", ".join(f'"{n}"' for n in names)

            dt = DeltaTable(path)
            features = dt.protocol().reader_features or []
            if "deletionVectors" in features:
                # Only tables whose owner asked for deletion vectors (ALTER TABLE, a
                # model's tblproperties): deltalake's pyarrow path refuses them, its own
                # scan reads them.
                check(
                    (schema, table) in {("rd", "dv"), ("silver", "latest_delete_insert")},
                    f"{schema}.{table} has deletion vectors",
                )
                try:
                    dt.to_pyarrow_table()
                    raise AssertionError("deltalake's pyarrow path read deletion vectors")
                except Exception as e:
                    check("deletionVectors" in str(e), f"refusal: {e}")
                got = pa.table(dt.scan().read_all()).select(names).to_pylist()
            else:
                got = dt.to_pyarrow_table().select(names).to_pylist()
            check(rows_of([tuple(r[n] for n in names) for r in got]) == want, f"deltalake {schema}.{table}")
            seen["deltalake"] += 1

            frame = pl.read_delta(path).select(names)
            check(rows_of(frame.rows()) == want, f"polars.read_delta {schema}.{table}")
            seen["polars"] += 1

            got = duck.execute(f"SELECT {select} FROM delta_scan('{path}')").fetchall()
            check(rows_of(got) == want, f"duckdb delta_scan {schema}.{table}: {len(got)} rows, want {len(want)}")
            seen["duckdb"] += 1
    check(all(n == len(listed) for n in seen.values()), seen)
    print("deltalake: ok")
    print("polars.read_delta: ok")
    print("duckdb delta: ok")

    # polars over the wire: connectorx (binary COPY by default, then cursor and simple)
    # and ADBC, each equal to psycopg's rows.
    import polars as pl

    uri = f"postgresql://{USER}:{PASSWORD.replace(' ', '%20')}@{HOST}:{PORT}/lake"
    query = "SELECT id, name, amount, day, at, ok FROM rd.typed"
    with connect() as c:
        want = rows_of(c.execute(query).fetchall())
    for protocol in (None, "cursor", "simple"):
        target = uri if protocol is None else f"{uri}?cxprotocol={protocol}"
        frame = pl.read_database_uri(query, target, engine="connectorx")
        check(rows_of(frame.rows()) == want, f"polars connectorx protocol={protocol or 'binary'}")
    # The ADBC driver reads numeric as its text (against PostgreSQL too).
    frame = pl.read_database_uri(query, uri, engine="adbc")
    got = [r[:2] + (None if r[2] is None else decimal.Decimal(r[2]),) + r[3:] for r in frame.rows()]
    check(rows_of(got) == want, "polars adbc")
    print("polars connectorx: ok")


main()
