"""End-to-end Flight SQL test with the real Python ADBC driver and pyarrow.

Run by tests/integration/flight.rs against a live tidepool server:
    python flight_adbc.py grpc://127.0.0.1:PORT USER PASSWORD
The lake holds gold.orders (order_id, customer_id, status, amount), the view gold.paid and
the procedure gold.customer_orders(customer_id). Exits non-zero on the first failure.
"""

import sys

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as paflight

uri, user, password = sys.argv[1], sys.argv[2], sys.argv[3]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# Bad credentials are refused at connect time.
try:
    flight_sql.connect(uri, db_kwargs={"username": user, "password": "wrong"}).close()
    raise AssertionError("a wrong password connected")
except adbc_driver_manager.Error as e:
    check("UNAUTHENTICATED" in str(e).upper(), f"wrong password error: {e}")

conn = flight_sql.connect(uri, db_kwargs={"username": user, "password": password})
cur = conn.cursor()

# Queries: Arrow all the way.
cur.execute("SELECT order_id, status, amount FROM gold.orders ORDER BY order_id")
table = cur.fetch_arrow_table()
check(table.num_rows == 3, f"rows: {table.num_rows}")
check(table.column("order_id").to_pylist() == [1, 2, 3], table.column("order_id"))
check(pa.types.is_floating(table.schema.field("amount").type) or pa.types.is_decimal(table.schema.field("amount").type), table.schema)

# DB-API rows too.
cur.execute("SELECT count(*) AS n FROM gold.paid")
check(cur.fetchone()[0] == 2, "view count")

# A larger result arrives in batches.
cur.execute("SELECT value FROM generate_series(1, 200000)")
reader = cur.fetch_record_batch()
batches = list(reader)
check(sum(b.num_rows for b in batches) == 200000, "generate_series rows")
check(len(batches) > 1, f"{len(batches)} batches")

# Prepared statements with parameters (ADBC binds them as an Arrow batch).
cur.execute("SELECT order_id FROM gold.orders WHERE customer_id = ? ORDER BY order_id", parameters=(42,))
check([r[0] for r in cur.fetchall()] == [1, 2], "bound query")
cur.execute("SELECT order_id FROM gold.orders WHERE customer_id = $1 ORDER BY order_id", parameters=(7,))
check([r[0] for r in cur.fetchall()] == [3], "bound query $1")

# Procedures: CALL, EXEC, table function, and a bound CALL.
for sql in [
    "CALL gold.customer_orders(42)",
    "EXEC gold.customer_orders @customer_id = 42",
    "SELECT order_id FROM gold.customer_orders(42) o ORDER BY 1",
]:
    cur.execute(sql)
    check([r[0] for r in cur.fetchall()] == [1, 2], sql)
cur.execute("CALL gold.customer_orders(?)", parameters=(7,))
check([r[0] for r in cur.fetchall()] == [3], "bound CALL")

# DDL and DML.
cur.execute("CREATE TABLE gold.adbc_copy AS SELECT * FROM gold.orders")
cur.execute("INSERT INTO gold.adbc_copy VALUES (9, 1, 'new', 1.5)")
cur.execute("SELECT count(*) FROM gold.adbc_copy")
check(cur.fetchone()[0] == 4, "insert landed")
cur.executemany("INSERT INTO gold.adbc_copy VALUES (?, 2, 'new', 2.5)", [(10,), (11,)])
cur.execute("SELECT count(*) FROM gold.adbc_copy")
check(cur.fetchone()[0] == 6, "executemany landed")
# UPDATE, DELETE, MERGE, upsert and ALTER through Flight SQL's CommandStatementUpdate
# (ADBC's execute_update), with their row counts.
def update(sql):
    stmt = cur.adbc_statement
    stmt.set_sql_query(sql)
    return stmt.execute_update()


n = update("UPDATE gold.adbc_copy SET status = 'seen' WHERE order_id >= 10")
check(n == 2, f"update count {n}")
n = update(
    "MERGE INTO gold.adbc_copy t USING (VALUES (11, 'merged'), (12, 'added')) AS s(id, st) "
    "ON t.order_id = s.id WHEN MATCHED THEN UPDATE SET status = s.st "
    "WHEN NOT MATCHED THEN INSERT (order_id, customer_id, status, amount) VALUES (s.id, 3, s.st, 0.5)"
)
check(n == 2, f"merge count {n}")
n = update(
    "INSERT INTO gold.adbc_copy VALUES (12, 3, 'upserted', 0.5), (13, 3, 'new', 0.5) "
    "ON CONFLICT (order_id) DO UPDATE SET status = excluded.status"
)
check(n == 2, f"upsert count {n}")
n = update("DELETE FROM gold.adbc_copy WHERE order_id = 9")
check(n == 1, f"delete count {n}")
update("ALTER TABLE gold.adbc_copy RENAME TO adbc_moved")
cur.execute("SELECT order_id, status FROM gold.adbc_moved WHERE order_id >= 10 ORDER BY order_id")
got = [tuple(r) for r in cur.fetchall()]
check(got == [(10, "seen"), (11, "merged"), (12, "upserted"), (13, "new")], f"after DML: {got}")

# Transactions: with autocommit off, ADBC begins a Flight SQL transaction; statements run
# in it and nothing is visible to another connection until commit; rollback discards.
tx = flight_sql.connect(
    uri, db_kwargs={"username": user, "password": password}, autocommit=False
)
txcur = tx.cursor()
txcur.execute("INSERT INTO gold.adbc_moved VALUES (20, 3, 'in-tx', 1.0)")
txcur.execute("DELETE FROM gold.adbc_moved WHERE order_id = 10")
txcur.execute("SELECT count(*) FROM gold.adbc_moved WHERE order_id IN (10, 20)")
check(txcur.fetchone()[0] == 1, "the transaction reads its own writes")
cur.execute("SELECT count(*) FROM gold.adbc_moved WHERE order_id IN (10, 20)")
check(cur.fetchone()[0] == 1, "others see the table as before")
cur.execute("SELECT count(*) FROM gold.adbc_moved WHERE order_id = 20")
check(cur.fetchone()[0] == 0, "uncommitted insert invisible to others")
tx.commit()
cur.execute("SELECT count(*) FROM gold.adbc_moved WHERE order_id IN (10, 20)")
check(cur.fetchone()[0] == 1, "committed")
cur.execute("SELECT count(*) FROM gold.adbc_moved WHERE order_id = 20")
check(cur.fetchone()[0] == 1, "committed insert visible")
txcur.execute("INSERT INTO gold.adbc_moved VALUES (21, 3, 'rolled back', 1.0)")
tx.rollback()
cur.execute("SELECT count(*) FROM gold.adbc_moved WHERE order_id = 21")
check(cur.fetchone()[0] == 0, "rolled back")
txcur.close()
tx.close()

# Errors keep the connection usable.
try:
    cur.execute("SELECT * FROM gold.nope")
    cur.fetchall()
    raise AssertionError("unknown table did not fail")
except adbc_driver_manager.Error as e:
    check("nope" in str(e), f"unknown table error: {e}")
cur.execute("SELECT 1 AS one")
check(cur.fetchone()[0] == 1, "usable after error")

# Metadata: ADBC's get_objects walks catalogs, schemas, tables and columns.
objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
catalogs = {c["catalog_name"]: c for c in objects}
check("lake" in catalogs, f"catalogs: {list(catalogs)}")
schemas = {s["db_schema_name"]: s for s in catalogs["lake"]["catalog_db_schemas"]}
check("gold" in schemas, f"schemas: {list(schemas)}")
tables = {t["table_name"]: t for t in schemas["gold"]["db_schema_tables"]}
check("orders" in tables and "paid" in tables, f"tables: {list(tables)}")
check(tables["paid"]["table_type"] == "VIEW", tables["paid"]["table_type"])
columns = [c["column_name"] for c in tables["orders"]["table_columns"]]
check(columns == ["order_id", "customer_id", "status", "amount"], columns)
schema = conn.adbc_get_table_schema("orders", db_schema_filter="gold")
check(schema.names == ["order_id", "customer_id", "status", "amount"], schema)
types = conn.adbc_get_table_types()
check("TABLE" in types and "VIEW" in types, types)
info = conn.adbc_get_info()
check(info.get("vendor_name") == "tidepool", info)

# Bulk ingest (Flight SQL CommandStatementIngest, ADBC's adbc_ingest): create, append,
# replace and create_append, one Delta commit per call, Arrow types mapped to the lake's.
import datetime
import decimal

def commits(table):
    cur.execute(f"SELECT count(*) FROM system.table_history('{table}')")
    return cur.fetchone()[0]

data = pa.table({
    "id": pa.array([1, 2, 3], pa.int64()),
    "name": pa.array(["a", None, "tab\tc"], pa.string()),
    "amount": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-2.25")], pa.decimal128(10, 2)),
    "day": pa.array([datetime.date(2024, 1, 1), None, datetime.date(1999, 12, 31)], pa.date32()),
    "at": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, 6), None, None], pa.timestamp("us")),
    "small": pa.array([1, 2, 255], pa.uint8()),
    "big": pa.array([1, 2, 2**63 - 1], pa.uint64()),
    "ok": pa.array([True, None, False]),
    "x": pa.array([0.5, None, -1e300], pa.float64()),
})
n = cur.adbc_ingest("ingested", data, mode="create", db_schema_name="gold")
check(n == 3, f"ingest create count {n}")
cur.execute("SELECT id, name, amount, day, at, small, big, ok, x FROM gold.ingested ORDER BY id")
got = [tuple(r) for r in cur.fetchall()]
check(got == [tuple(r.values()) for r in data.to_pylist()], f"ingested rows: {got}")
cur.execute(
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = 'gold' AND table_name = 'ingested' ORDER BY ordinal_position"
)
types = dict(cur.fetchall())
check(types["small"] == "smallint" and types["big"] == "bigint", f"unsigned columns stored signed: {types}")
check(commits("gold.ingested") == 1, "create is one commit")
try:
    cur.adbc_ingest("ingested", data, mode="create", db_schema_name="gold")
    raise AssertionError("create over an existing table did not fail")
except adbc_driver_manager.Error as e:
    check("exists" in str(e), f"create twice: {e}")
try:
    cur.adbc_ingest("nowhere", data, mode="append", db_schema_name="gold")
    raise AssertionError("append to a missing table did not fail")
except adbc_driver_manager.Error as e:
    check("nowhere" in str(e), f"append to missing: {e}")
# Append: columns by name, in any order, the rest NULL; many batches, one commit.
n = cur.adbc_ingest("ingested", data.select(["name", "id"]).slice(0, 2), mode="append", db_schema_name="gold")
check(n == 2, f"append count {n}")
many = pa.RecordBatchReader.from_batches(
    pa.schema([("id", pa.int64()), ("x", pa.float64())]),
    [pa.record_batch([pa.array(range(i * 50000, (i + 1) * 50000), pa.int64()),
                      pa.array([1.0] * 50000)], names=["id", "x"]) for i in range(6)],
)
n = cur.adbc_ingest("ingested", many, mode="append", db_schema_name="gold")
check(n == 300000, f"append of many batches: {n}")
cur.execute("SELECT count(*), count(amount) FROM gold.ingested")
check(tuple(cur.fetchone()) == (300005, 2), "appended rows")
check(commits("gold.ingested") == 3, "each append is one commit")
# A value the column cannot hold fails the ingest and writes nothing.
try:
    cur.adbc_ingest("ingested", pa.table({"id": pa.array(["not a number"])}), mode="append", db_schema_name="gold")
    raise AssertionError("a bad value was ingested")
except adbc_driver_manager.Error:
    pass
cur.execute("SELECT count(*) FROM gold.ingested")
check(cur.fetchone()[0] == 300005, "a failed ingest writes nothing")
check(commits("gold.ingested") == 3, "a failed ingest commits nothing")
# Replace: the stream's columns and rows, one commit.
n = cur.adbc_ingest("ingested", pa.table({"y": pa.array(["only"])}), mode="replace", db_schema_name="gold")
check(n == 1, f"replace count {n}")
cur.execute("SELECT * FROM gold.ingested")
check(cur.fetch_arrow_table().column_names == ["y"], "replaced columns")
n = cur.adbc_ingest("ingested_ca", data.select(["id"]), mode="create_append", db_schema_name="gold")
n += cur.adbc_ingest("ingested_ca", data.select(["id"]), mode="create_append", db_schema_name="gold")
cur.execute("SELECT count(*) FROM gold.ingested_ca")
check(n == 6 and cur.fetchone()[0] == 6, "create_append")

cur.close()
conn.close()

# pyarrow.flight speaks to the same port: handshake, then the bearer token.
client = paflight.FlightClient(uri)
token = client.authenticate_basic_token(user, password)
check(token[0] == b"authorization" and token[1].startswith(b"Bearer "), token)
actions = [a.type for a in client.list_actions(paflight.FlightCallOptions(headers=[token]))]
check("CreatePreparedStatement" in actions, actions)
print("adbc flight sql: ok")
