"""COPY with real Python drivers against a running tidepool: psycopg 3's copy API in text
and binary (write_row with set_types, read rows back with COPY TO), and asyncpg's
copy_records_to_table (binary COPY FROM) and copy_from_query (COPY TO).

Usage: copy_clients.py HOST PORT USER PASSWORD
Prints "<client>: ok" per client; exits non-zero with the failing check otherwise.
"""

import asyncio
import datetime
import decimal
import sys

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

ROWS = [
    (1, "plain", decimal.Decimal("12.34"), datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5), True, 1.5),
    (2, "tab\there, newline\nhere", decimal.Decimal("-0.5"), None, None, False, None),
    (3, None, None, datetime.date(1999, 12, 31), datetime.datetime(1999, 12, 31, 23, 59, 59, 123456), None, -2.25),
]
DDL = (
    "CREATE TABLE {t} (id BIGINT NOT NULL, name TEXT, price NUMERIC(10,2), day DATE, "
    "at TIMESTAMP, ok BOOLEAN, x DOUBLE PRECISION)"
)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def psycopg3():
    import psycopg

    with psycopg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname="lake", autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS cp")
        for fmt in ("text", "binary"):
            t = f"cp.psycopg_{fmt}"
            conn.execute(DDL.format(t=t))
            with conn.cursor() as cur:
                with cur.copy(f"COPY {t} (id, name, price, day, at, ok, x) FROM STDIN (FORMAT {fmt})") as copy:
                    if fmt == "binary":
                        copy.set_types(["int8", "text", "numeric", "date", "timestamp", "bool", "float8"])
                    for row in ROWS:
                        copy.write_row(row)
                check(cur.rowcount == 3, f"psycopg {fmt} COPY count {cur.rowcount}")
            got = conn.execute(f"SELECT id, name, price, day, at, ok, x FROM {t} ORDER BY id").fetchall()
            check(got == ROWS, f"psycopg {fmt} round trip: {got!r}")
            # And out again with COPY TO, rows parsed by psycopg.
            with conn.cursor() as cur:
                with cur.copy(f"COPY (SELECT id, name, price, day, at, ok, x FROM {t} ORDER BY id) TO STDOUT (FORMAT {fmt})") as copy:
                    copy.set_types(["int8", "text", "numeric", "date", "timestamp", "bool", "float8"])
                    out = list(copy.rows())
            check(out == ROWS, f"psycopg {fmt} COPY TO: {out!r}")
        # A failed COPY (an exception inside the block sends CopyFail) writes nothing.
        try:
            with conn.cursor() as cur:
                with cur.copy("COPY cp.psycopg_text (id, name) FROM STDIN") as copy:
                    copy.write_row((9, "never"))
                    raise RuntimeError("stop")
        except (RuntimeError, psycopg.errors.QueryCanceled):
            pass
        n = conn.execute("SELECT count(*) FROM cp.psycopg_text").fetchone()[0]
        check(n == 3, f"psycopg: a failed COPY wrote rows ({n})")
    print("psycopg3: ok")


async def asyncpg_client():
    import asyncpg

    conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, database="lake")
    try:
        await conn.execute(DDL.format(t="cp.asyncpg"))
        result = await conn.copy_records_to_table(
            "asyncpg", schema_name="cp", records=ROWS, columns=["id", "name", "price", "day", "at", "ok", "x"]
        )
        check(result == "COPY 3", f"asyncpg copy_records_to_table: {result}")
        got = await conn.fetch("SELECT id, name, price, day, at, ok, x FROM cp.asyncpg ORDER BY id")
        check([tuple(r) for r in got] == ROWS, f"asyncpg round trip: {got!r}")
        chunks = []

        async def sink(data):
            chunks.append(bytes(data))

        result = await conn.copy_from_query("SELECT id, name FROM cp.asyncpg ORDER BY id", output=sink, format="csv")
        check(result == "COPY 3", f"asyncpg copy_from_query: {result}")
        text = b"".join(chunks).decode()
        check(text == '1,plain\n2,"tab\there, newline\nhere"\n3,\n', f"asyncpg CSV: {text!r}")
    finally:
        await conn.close()
    print("asyncpg: ok")


psycopg3()
asyncio.run(asyncpg_client())
