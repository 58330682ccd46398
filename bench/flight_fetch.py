"""Benchmark client: fetch a query's result over Flight SQL with the Python ADBC driver.

    python bench/flight_fetch.py grpc://127.0.0.1:50051 "SELECT * FROM tpch.lineitem" [runs]

Reads the record batches as they arrive (not collected) and reports rows/s and the Arrow
bytes/s of the batches (pyarrow's nbytes: the columnar buffers).
"""

import sys
import time

import adbc_driver_flightsql.dbapi as flight_sql

uri, query = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
conn = flight_sql.connect(uri, autocommit=True)
cur = conn.cursor()
for _ in range(runs):
    start = time.perf_counter()
    cur.execute(query)
    rows = 0
    nbytes = 0
    batches = 0
    for batch in cur.fetch_record_batch():
        rows += batch.num_rows
        nbytes += batch.nbytes
        batches += 1
    secs = time.perf_counter() - start
    print(
        f"{rows} rows in {secs:.2f} s: {rows / secs:.0f} rows/s, {nbytes / secs / 1e6:.0f} MB/s "
        f"of Arrow data ({nbytes / 1e6:.0f} MB, {batches} batches; flight sql, python adbc)"
    )
cur.close()
conn.close()
