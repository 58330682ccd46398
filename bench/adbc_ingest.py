"""Times ADBC's adbc_ingest of TPC-H lineitem from a pyarrow table (read from tpchgen's
CSV first, not timed) into tpch.lineitem_in: over Flight SQL (CommandStatementIngest)
into tidepool, or with the PostgreSQL driver (COPY ... FROM STDIN binary) into
PostgreSQL. Prints the milliseconds of the ingest and its commit.

Usage: adbc_ingest.py flight|postgres URI CSV ROWS
"""

import sys
import time

import pyarrow as pa
import pyarrow.csv as csv

kind, uri, path, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
money = pa.decimal128(15, 2)
types = {
    "l_orderkey": pa.int64(), "l_partkey": pa.int64(), "l_suppkey": pa.int64(),
    "l_linenumber": pa.int32(), "l_quantity": money, "l_extendedprice": money,
    "l_discount": money, "l_tax": money, "l_returnflag": pa.string(),
    "l_linestatus": pa.string(), "l_shipdate": pa.date32(), "l_commitdate": pa.date32(),
    "l_receiptdate": pa.date32(), "l_shipinstruct": pa.string(), "l_shipmode": pa.string(),
    "l_comment": pa.string(),
}
table = csv.read_csv(path, convert_options=csv.ConvertOptions(column_types=types))
assert table.num_rows == rows, table.num_rows

if kind == "flight":
    import adbc_driver_flightsql.dbapi as driver
else:
    import adbc_driver_postgresql.dbapi as driver

with driver.connect(uri) as conn, conn.cursor() as cur:
    started = time.perf_counter()
    n = cur.adbc_ingest("lineitem_in", table, mode="create", db_schema_name="tpch")
    conn.commit()
    elapsed = time.perf_counter() - started
    assert n in (rows, -1), n
    cur.execute("SELECT count(*) FROM tpch.lineitem_in")
    assert cur.fetchone()[0] == rows
print(int(elapsed * 1000))
