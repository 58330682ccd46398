"""Drivers that read the catalogs before they read data, against a running tidepool:
DuckDB's postgres extension (ATTACH, SHOW ALL TABLES, scans with filters, postgres_query,
CREATE TABLE / INSERT / CTAS / UPDATE / DELETE through the attached database), the ADBC
PostgreSQL driver
(typed Arrow results, bound parameters, adbc_get_objects, adbc_get_table_schema,
adbc_ingest create and append) and psqlODBC through pyodbc, with and without
UseDeclareFetch (queries, bool and int parameters, SQLTables, SQLColumns, SQLPrimaryKeys,
SQLForeignKeys, SQLStatistics).

Usage: catalog_clients.py HOST PORT USER PASSWORD
Prints "<client>: ok" per client; exits non-zero with the failing check otherwise.
"""

import decimal
import glob
import os
import sys

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def setup():
    import psycopg

    with psycopg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname="lake", autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS cat")
        c.execute("CREATE TABLE cat.t (id BIGINT PRIMARY KEY, name TEXT, amount NUMERIC(10,2), ok BOOLEAN)")
        c.execute("INSERT INTO cat.t VALUES (1, 'a', 1.50, true), (2, 'b', 2.25, false)")
        c.execute("CREATE TABLE cat.child (cid BIGINT PRIMARY KEY, tid BIGINT REFERENCES cat.t (id))")


def duckdb_attach():
    import duckdb
    import duckdb_extension_postgres_scanner as scanner

    ext = glob.glob(os.path.join(os.path.dirname(scanner.__file__), "**/*.duckdb_extension"), recursive=True)
    con = duckdb.connect(config={"allow_unsigned_extensions": True})
    con.execute(f"LOAD '{ext[0]}'")
    con.execute(
        f"ATTACH 'host={HOST} port={PORT} user={USER} password=''{PASSWORD}'' dbname=lake' AS tp (TYPE postgres)"
    )
    tables = {(r[1], r[2]): r[4] for r in con.execute("SHOW ALL TABLES").fetchall()}
    check(tables.get(("cat", "t")) == ["BIGINT", "VARCHAR", "DECIMAL(10,2)", "BOOLEAN"], tables)
    rows = con.execute("SELECT * FROM tp.cat.t ORDER BY id").fetchall()
    check(rows == [(1, "a", decimal.Decimal("1.50"), True), (2, "b", decimal.Decimal("2.25"), False)], rows)
    check(con.execute("SELECT name FROM tp.cat.t WHERE id = 2").fetchall() == [("b",)], "filter")
    rows = con.execute("SELECT * FROM postgres_query('tp', 'SELECT count(*) FROM cat.t')").fetchall()
    check(rows == [(2,)], rows)
    con.execute("CREATE TABLE tp.cat.duck (a INTEGER, b VARCHAR, c DOUBLE, d DATE)")
    con.execute("INSERT INTO tp.cat.duck VALUES (1, 'x', 1.5, DATE '2024-01-02'), (2, NULL, NULL, NULL)")
    rows = con.execute("SELECT a, b FROM tp.cat.duck ORDER BY a").fetchall()
    check(rows == [(1, "x"), (2, None)], rows)
    con.execute("CREATE TABLE tp.cat.duck2 AS SELECT * FROM range(1000) t(i)")
    check(con.execute("SELECT sum(i) FROM tp.cat.duck2").fetchall() == [(499500,)], "ctas")
    # DELETE and UPDATE go by ctid: DuckDB reads the tids of the rows (COPY binary), then
    # sends them back in batches of about 300 in one transaction; the UPDATE's new
    # values go through a temporary table joined on ctid.
    con.execute("DELETE FROM tp.cat.duck2 WHERE i % 3 = 0")
    kept = [i for i in range(1000) if i % 3]
    rows = con.execute("SELECT count(*), sum(i) FROM tp.cat.duck2").fetchall()
    check(rows == [(len(kept), sum(kept))], ("delete", rows))
    con.execute("UPDATE tp.cat.duck2 SET i = i + 1000 WHERE i % 5 = 0")
    updated = [i + 1000 if i % 5 == 0 else i for i in kept]
    rows = con.execute("SELECT count(*), sum(i), max(i) FROM tp.cat.duck2").fetchall()
    check(rows == [(len(updated), sum(updated), max(updated))], ("update", rows))
    con.execute("UPDATE tp.cat.duck SET b = 'y', c = 2.5 WHERE a = 2")
    con.execute("DELETE FROM tp.cat.duck WHERE a = 1")
    rows = con.execute("SELECT a, b, c FROM tp.cat.duck").fetchall()
    check(rows == [(2, "y", 2.5)], ("update one", rows))
    print("duckdb: ok")


def adbc():
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    uri = f"postgresql://{USER}:{PASSWORD.replace(' ', '%20')}@{HOST}:{PORT}/lake"
    with pg.connect(uri) as conn:
        cur = conn.cursor()
        cur.execute("SELECT id, name, ok FROM cat.t ORDER BY id")
        table = cur.fetch_arrow_table()
        check(
            [f.type for f in table.schema] == [pa.int64(), pa.string(), pa.bool_()],
            f"typed columns: {table.schema}",
        )
        check(table.to_pylist()[0] == {"id": 1, "name": "a", "ok": True}, table.to_pylist())
        cur.execute("SELECT name FROM cat.t WHERE id = $1", (2,))
        check(cur.fetchall() == [("b",)], "bound parameter")
        schema = conn.adbc_get_table_schema("t", db_schema_filter="cat")
        check(schema.field("id").type == pa.int64() and schema.field("ok").type == pa.bool_(), schema)
        objects = conn.adbc_get_objects(depth="all", db_schema_filter="cat").read_all().to_pylist()
        cat = [s for c in objects for s in c["catalog_db_schemas"] if s["db_schema_name"] == "cat"]
        tables = {t["table_name"]: t for t in cat[0]["db_schema_tables"]}
        check("t" in tables and "child" in tables, tables.keys())
        kinds = {c["constraint_type"] for c in tables["child"]["table_constraints"] or []}
        check("PRIMARY KEY" in kinds, tables["child"]["table_constraints"])
        cur.adbc_ingest("ing", pa.table({"a": [1, 2], "b": ["x", "y"]}), mode="create", db_schema_name="cat")
        conn.commit()
        cur.adbc_ingest("ing", pa.table({"a": [3], "b": ["z"]}), mode="append", db_schema_name="cat")
        conn.commit()
        cur.execute("SELECT a, b FROM cat.ing ORDER BY a")
        check(cur.fetchall() == [(1, "x"), (2, "y"), (3, "z")], "ingest")
    print("adbc: ok")


def odbc():
    import pyodbc

    for fetch in ("0", "1"):
        conn = pyodbc.connect(
            "DRIVER={PostgreSQL Unicode};"
            f"SERVER={HOST};PORT={PORT};DATABASE=lake;UID={USER};PWD={{{PASSWORD}}};"
            f"UseDeclareFetch={fetch};Fetch=2",
            autocommit=False,
        )
        cur = conn.cursor()
        rows = cur.execute("SELECT id, name FROM cat.t ORDER BY id").fetchall()
        check([tuple(r) for r in rows] == [(1, "a"), (2, "b")], rows)
        # More rows than one fetch: the declare/fetch mode fetches again.
        n = len(cur.execute("SELECT i FROM (SELECT unnest(range(100)) AS i) x").fetchall())
        check(n == 100, n)
        check(cur.execute("SELECT id FROM cat.t WHERE ok = ?", False).fetchall()[0][0] == 2, "bool param")
        check(cur.execute("SELECT name FROM cat.t WHERE id = ?", 1).fetchall()[0][0] == "a", "int param")
        names = {r.table_name for r in cur.tables(schema="cat")}
        check({"t", "child"} <= names, names)
        columns = [(r.column_name, r.type_name) for r in cur.columns(table="t", schema="cat")]
        check(columns[:2] == [("id", "int8"), ("name", "text")], columns)
        pk = [(r.column_name, r.pk_name) for r in cur.primaryKeys("t", schema="cat")]
        check(pk == [("id", "t_pkey")], pk)
        fk = [(r.pkcolumn_name, r.fktable_name, r.fkcolumn_name) for r in cur.foreignKeys(foreignTable="child", foreignSchema="cat")]
        check(fk == [("id", "child", "tid")], fk)
        stats = [(r.index_name, r.column_name) for r in cur.statistics("t", schema="cat") if r.index_name]
        check(stats == [("t_pkey", "id")], stats)
        conn.rollback()
        conn.close()
    print("odbc: ok")


setup()
duckdb_attach()
adbc()
odbc()
