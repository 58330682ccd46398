"""Real Postgres client libraries against a running tidepool: psycopg 3 (text and binary),
psycopg2 + SQLAlchemy 2 inspect + pandas.read_sql, asyncpg (binary protocol, pool reset).

Usage: pg_clients.py HOST PORT USER PASSWORD [CLIENT ...]
Each client connects (SCRAM), lists the lake's tables, reads the columns of
gold.fact_orders with their types, and runs a parameterised query. Prints
"<client>: ok" per client; exits non-zero with the failing check otherwise.
"""

import asyncio
import datetime
import decimal
import sys

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ONLY = set(sys.argv[5:])

EXPECTED_ROW = (
    2,
    "c2",
    decimal.Decimal("7.25"),
    datetime.datetime(2026, 11, 2, 11, 30, tzinfo=datetime.timezone.utc),
    datetime.date(2026, 11, 2),
    False,
    0.0,
    ["c"],
)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_row(row, client):
    row = tuple(row)
    check(len(row) == len(EXPECTED_ROW), f"{client}: row {row!r}")
    for got, want in zip(row, EXPECTED_ROW):
        if isinstance(want, datetime.datetime):
            check(isinstance(got, datetime.datetime) and got.tzinfo is not None, f"{client}: tz-aware {got!r}")
            check(got == want, f"{client}: {got!r} != {want!r}")
        else:
            check(type(got) is type(want) and got == want, f"{client}: {got!r} ({type(got).__name__}) != {want!r}")


def psycopg3():
    import psycopg

    with psycopg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname="lake") as conn:
        cur = conn.execute(
            "select table_name, table_type from information_schema.tables where table_schema = %s order by 1",
            ("gold",),
        )
        tables = cur.fetchall()
        check(("fact_orders", "BASE TABLE") in tables and ("paid_orders", "VIEW") in tables, f"psycopg tables {tables}")
        cols = conn.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'gold' and table_name = 'fact_orders' order by ordinal_position"
        ).fetchall()
        check(
            [c[1] for c in cols]
            == ["bigint", "text", "numeric", "timestamp with time zone", "date", "boolean", "double precision", "ARRAY"],
            f"psycopg columns {cols}",
        )
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            cur.execute("select * from gold.fact_orders where order_id = %s", (2,))
            check_row(cur.fetchone(), f"psycopg binary={binary}")
        # Server-side prepared statement after repeated execution (prepare_threshold=5).
        for i in range(7):
            row = conn.execute("select amount from gold.fact_orders where order_id = %s", (1,)).fetchone()
            check(row[0] == decimal.Decimal("12.50"), f"psycopg prepared run {i}: {row}")
        # Server-side cursor: DECLARE with a bound parameter, Describe of the cursor's
        # portal by name, then FETCH FORWARD itersize rows at a time.
        with conn.cursor(name="orders_cur") as cur:
            cur.itersize = 1
            cur.execute("select order_id from gold.fact_orders where order_id >= %s order by order_id", (1,))
            check([r[0] for r in cur] == [1, 2], "psycopg named cursor")
        conn.commit()
        try:
            conn.execute("select nope from gold.fact_orders")
            check(False, "psycopg: bad column must fail")
        except psycopg.errors.UndefinedColumn:
            conn.rollback()
        check(conn.execute("select 1").fetchone()[0] == 1, "psycopg: usable after an error")
        # ReadyForQuery carries the block's state; ROLLBACK TO SAVEPOINT recovers a failed
        # block (how psqlODBC and JDBC's autosave handle errors).
        status = psycopg.pq.TransactionStatus
        conn.rollback()
        conn.execute("savepoint before")
        check(conn.info.transaction_status == status.INTRANS, "psycopg: in a block")
        try:
            conn.execute("select 1 / 0").fetchall()
            check(False, "psycopg: division by zero must fail")
        except psycopg.errors.DivisionByZero:
            pass
        check(conn.info.transaction_status == status.INERROR, "psycopg: failed block")
        try:
            conn.execute("select 1")
            check(False, "psycopg: a failed block must refuse statements")
        except psycopg.errors.InFailedSqlTransaction:
            pass
        conn.execute("rollback to savepoint before")
        check(conn.info.transaction_status == status.INTRANS, "psycopg: recovered block")
        check(conn.execute("select 2").fetchone()[0] == 2, "psycopg: usable after rollback to")
        conn.rollback()
        check(conn.info.transaction_status == status.IDLE, "psycopg: idle after rollback")
    print("psycopg3: ok")


def sqlalchemy_pandas():
    import pandas
    import sqlalchemy
    from sqlalchemy import inspect, text

    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg2", username=USER, password=PASSWORD, host=HOST, port=PORT, database="lake"
    )
    engine = sqlalchemy.create_engine(url)
    insp = inspect(engine)
    check("gold" in insp.get_schema_names(), f"schemas {insp.get_schema_names()}")
    tables = insp.get_table_names(schema="gold")
    check("fact_orders" in tables, f"sqlalchemy tables {tables}")
    views = insp.get_view_names(schema="gold")
    check("paid_orders" in views, f"sqlalchemy views {views}")
    cols = {c["name"]: c for c in insp.get_columns("fact_orders", schema="gold")}
    types = {n: type(c["type"]).__name__ for n, c in cols.items()}
    check(
        types
        == {
            "order_id": "BIGINT",
            "customer": "TEXT",
            "amount": "NUMERIC",
            "ordered_at": "TIMESTAMP",
            "order_date": "DATE",
            "paid": "BOOLEAN",
            "discount": "DOUBLE_PRECISION",
            "tags": "ARRAY",
        },
        f"sqlalchemy column types {types}",
    )
    check(cols["ordered_at"]["type"].timezone, "ordered_at has a time zone")
    check((cols["amount"]["type"].precision, cols["amount"]["type"].scale) == (12, 2), f"numeric(12,2): {cols['amount']}")
    check(insp.get_pk_constraint("fact_orders", schema="gold")["constrained_columns"] == [], "no primary key")
    check(insp.get_foreign_keys("fact_orders", schema="gold") == [], "no foreign keys")
    check(insp.get_indexes("fact_orders", schema="gold") == [], "no indexes")
    check(insp.get_unique_constraints("fact_orders", schema="gold") == [], "no unique constraints")
    check(insp.get_check_constraints("fact_orders", schema="gold") == [], "no check constraints")
    check(insp.has_table("fact_orders", schema="gold"), "has_table")
    df = pandas.read_sql("select * from gold.fact_orders order by order_id", engine)
    check(len(df) == 2 and list(df.columns)[0] == "order_id", f"pandas frame {df}")
    df = pandas.read_sql(
        text("select order_id, amount from gold.fact_orders where order_id = :id"), engine, params={"id": 2}
    )
    check(df["order_id"].tolist() == [2], f"pandas params {df}")
    # pandas.to_sql creates FLOAT(53) columns: double precision, values back exactly.
    frame = pandas.DataFrame({"id": [1, 2], "x": [1 / 3, 2.5e-300], "n": [1.5, None]})
    frame.to_sql("pd_floats", engine, schema="gold", if_exists="replace", index=False)
    back = pandas.read_sql("select id, x, n from gold.pd_floats order by id", engine)
    check(back["x"].tolist() == [1 / 3, 2.5e-300], f"to_sql floats {back}")
    check(back["n"].isna().tolist() == [False, True], f"to_sql NULL {back}")
    with engine.connect() as conn:
        row = conn.execute(text("select * from gold.fact_orders where order_id = :id"), {"id": 2}).one()
        check_row(row, "psycopg2")
    # psycopg2 named cursor: DECLARE ... CURSOR WITHOUT HOLD, FETCH FORWARD itersize.
    raw = engine.raw_connection()
    try:
        cur = raw.cursor(name="orders_cur2")
        cur.itersize = 1
        cur.execute("select order_id from gold.fact_orders order by order_id")
        check([r[0] for r in cur] == [1, 2], "psycopg2 named cursor")
        cur.close()
        raw.commit()
    finally:
        raw.close()
    sqlalchemy_orm(engine)
    print("sqlalchemy: ok")


def sqlalchemy_orm(engine):
    """ORM inserts, updates and deletes in sessions that commit and roll back."""
    import sqlalchemy
    from sqlalchemy import text
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "orm_items"
        __table_args__ = {"schema": "gold"}
        id: Mapped[int] = mapped_column(sqlalchemy.BigInteger, primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(sqlalchemy.Text)
        qty: Mapped[int] = mapped_column(sqlalchemy.BigInteger)

    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS gold.orm_items"))
        conn.execute(text("CREATE TABLE gold.orm_items (id BIGINT, name TEXT, qty BIGINT)"))
    with Session(engine) as s:
        s.add_all([Item(id=1, name="apple", qty=3), Item(id=2, name="pear", qty=5)])
        s.commit()
    with Session(engine) as s:
        apple = s.get(Item, 1)
        apple.qty = 10
        s.delete(s.get(Item, 2))
        s.add(Item(id=3, name="plum", qty=1))
        # Inside the session's transaction the changes are visible...
        s.flush()
        check(s.execute(text("select count(*) from gold.orm_items")).scalar() == 2, "orm flush")
        # ...and to nobody else until commit.
        with engine.connect() as other:
            n = other.execute(text("select count(*) from gold.orm_items where id = 2")).scalar()
            check(n == 1, "orm: uncommitted delete invisible to others")
        s.commit()
    with Session(engine) as s:
        s.add(Item(id=4, name="fig", qty=7))
        s.get(Item, 1).qty = 99
        s.flush()
        s.rollback()
    with engine.connect() as conn:
        rows = conn.execute(text("select id, name, qty from gold.orm_items order by id")).all()
        check([tuple(r) for r in rows] == [(1, "apple", 10), (3, "plum", 1)], f"orm rows {rows}")
    # RETURNING, as SQLAlchemy Core writes it (insertmanyvalues batches several rows).
    t = Item.__table__
    with engine.begin() as conn:
        rows = conn.execute(
            sqlalchemy.insert(t).returning(t.c.id, t.c.qty),
            [{"id": 5, "name": "kiwi", "qty": 2}, {"id": 6, "name": "lime", "qty": 4}],
        ).all()
        check(sorted(tuple(r) for r in rows) == [(5, 2), (6, 4)], f"insert returning {rows}")
        rows = conn.execute(sqlalchemy.update(t).where(t.c.id == 5).values(qty=t.c.qty + 1).returning(t.c.qty)).all()
        check([tuple(r) for r in rows] == [(3,)], f"update returning {rows}")
        rows = conn.execute(sqlalchemy.delete(t).where(t.c.id >= 5).returning(t.c.name)).all()
        check(sorted(r[0] for r in rows) == ["kiwi", "lime"], f"delete returning {rows}")
    with engine.connect() as conn:
        check(conn.execute(text("select count(*) from gold.orm_items")).scalar() == 2, "after returning")


async def asyncpg_client():
    import asyncpg

    pool = await asyncpg.create_pool(host=HOST, port=PORT, user=USER, password=PASSWORD, database="lake", min_size=1, max_size=1)
    for _ in range(3):  # release runs asyncpg's reset query each time
        async with pool.acquire() as conn:
            tables = await conn.fetch(
                "select table_name from information_schema.tables where table_schema = $1", "gold"
            )
            check("fact_orders" in [t["table_name"] for t in tables], f"asyncpg tables {tables}")
            row = await conn.fetchrow("select * from gold.fact_orders where order_id = $1", 2)
            check_row(row.values(), "asyncpg")
            try:
                await conn.fetch("select * from gold.nope")
                check(False, "asyncpg: unknown table must fail")
            except asyncpg.exceptions.UndefinedTableError:
                pass
    await pool.close()
    print("asyncpg: ok")


CLIENTS = {
    "psycopg3": psycopg3,
    "sqlalchemy": sqlalchemy_pandas,
    "asyncpg": lambda: asyncio.run(asyncpg_client()),
}

failed = False
for name, run in CLIENTS.items():
    if ONLY and name not in ONLY:
        continue
    try:
        run()
    except Exception as e:  # report every client, then fail
        import traceback

        traceback.print_exc()
        print(f"{name}: FAILED: {e}")
        failed = True
sys.exit(1 if failed else 0)
