"""TPC-H on a tidepool server with [cluster] scheduler: the 22 queries with the session's
queries on the cluster and with them on the server alone give the same rows; EXPLAIN
shows the Ballista stages; an executor killed while a query runs leaves the server
answering.

  python cluster_tpch.py HOST PORT DATA_DIR SF EXECUTOR_PID

Data: DuckDB's TPC-H generator (dbgen) at scale SF, written as Parquet into DATA_DIR and
loaded into the lake with CREATE TABLE ... AS SELECT * FROM read_parquet(...). The query
texts are DuckDB's tpch extension's (tpch_queries()).
"""

import glob
import math
import os
import signal
import sys
import threading
import time

import duckdb
import duckdb_extension_tpch
import psycopg

TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


def duck():
    path = glob.glob(
        os.path.join(os.path.dirname(duckdb_extension_tpch.__file__), "**/*.duckdb_extension"),
        recursive=True,
    )
    con = duckdb.connect(config={"allow_unsigned_extensions": True})
    con.execute(f"LOAD '{path[0]}'")
    return con


def same(a, b):
    """Rows equal, numbers within a relative 1e-9 (sums differ in their last bits with the
    order rows are added in)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if len(x) != len(y):
            return False
        for u, v in zip(x, y):
            if isinstance(u, (int, float)) and isinstance(v, (int, float)) and not isinstance(u, bool):
                if not math.isclose(float(u), float(v), rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif hasattr(u, "is_finite") and hasattr(v, "is_finite"):  # Decimal
                if not math.isclose(float(u), float(v), rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif u != v:
                return False
    return True


def cpu_seconds(pid):
    """User and system CPU time of process `pid` so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows(cur, sql):
    cur.execute(sql)
    return cur.fetchall()


def main():
    host, port, data, sf, executor_pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    other_executor = int(sys.argv[6])
    con = duck()
    con.execute(f"CALL dbgen(sf={sf})")
    queries = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()
    for t in TABLES:
        con.execute(f"COPY {t} TO '{data}/{t}.parquet' (FORMAT parquet)")

    conninfo = f"host={host} port={port} user=tidepool dbname=lake"
    with psycopg.connect(conninfo, autocommit=True) as c:
        cur = c.cursor()
        for t in TABLES:
            cur.execute(f"CREATE TABLE public.{t} AS SELECT * FROM read_parquet('{data}/{t}.parquet')")

        # Every query: the same rows on the cluster as here, and EXPLAIN shows its stages.
        distributed = 0
        for nr, q in queries:
            cur.execute("SET tidepool.distributed = off")
            local = rows(cur, q)
            cur.execute("SET tidepool.distributed = on")
            remote = rows(cur, q)
            assert same(local, remote), f"q{nr}: {len(local)} rows here, {len(remote)} on the cluster:\n{local[:5]}\n{remote[:5]}"
            plan = "\n".join(r[1] for r in rows(cur, "EXPLAIN " + q) if r[0] == "distributed_plan")
            assert plan, f"q{nr}: EXPLAIN has no distributed_plan row"
            if plan.startswith("runs on the cluster"):
                assert "Stage" in plan and "ShuffleWriterExec" in plan, f"q{nr}: {plan}"
                distributed += 1
            else:
                print(f"q{nr}: {plan.splitlines()[0]}")
        print(f"{len(queries)} queries equal; {distributed} ran on the cluster")
        assert distributed == len(queries), f"only {distributed} of {len(queries)} queries went to the cluster"

        # A query here does not go: the catalog is this server's.
        plan = rows(cur, "EXPLAIN SELECT count(*) FROM pg_catalog.pg_class")
        note = [r[1] for r in plan if r[0] == "distributed_plan"]
        assert note and note[0].startswith("runs on this node"), note

        # One executor killed while a query runs on both: the query is run again by
        # Ballista or fails with an error, within the statement timeout; the server answers.
        heavy = (
            "SELECT a.l_suppkey % 50 AS s, count(*) AS n, sum(b.l_quantity) AS q FROM lineitem a "
            "JOIN lineitem b ON a.l_suppkey % 50 = b.l_suppkey % 50 GROUP BY 1 ORDER BY 1"
        )
        cur.execute("SET tidepool.distributed = off")
        expected = rows(cur, heavy)

        # A statement that times out while its job runs: 57014, and the job is cancelled
        # on the cluster (the executors stop working on it) instead of running to its end.
        cur.execute("SET tidepool.distributed = on")
        cur.execute("SET statement_timeout = '1500ms'")
        heavier = heavy.replace("% 50", "% 10")  # 6,000 matches per row: tens of seconds
        started = time.monotonic()
        try:
            rows(cur, heavier)
            raise AssertionError(f"the heavy query ended in {time.monotonic() - started:.1f} s, before its timeout: the test proves nothing")
        except psycopg.Error as e:
            assert e.sqlstate == "57014", f"{e.sqlstate}: {e}"
        cur.execute("SET statement_timeout = 0")
        time.sleep(1.0)  # the cancel reaches the executors; their current batches end
        before = cpu_seconds(executor_pid) + cpu_seconds(other_executor)
        time.sleep(2.0)
        busy = cpu_seconds(executor_pid) + cpu_seconds(other_executor) - before
        print(f"statement timeout: the executors used {busy:.2f} CPU s in the 2 s after it")
        assert busy < 0.5, f"the executors kept working on a timed-out statement's job: {busy:.2f} CPU s in 2 s"
        outcome = {}

        def run():
            with psycopg.connect(conninfo, autocommit=True) as c2:
                cur2 = c2.cursor()
                cur2.execute("SET statement_timeout = '120s'")
                started = time.monotonic()
                try:
                    outcome["rows"] = rows(cur2, heavy)
                except psycopg.Error as e:
                    outcome["error"] = f"{e.sqlstate}: {e}"
                outcome["seconds"] = time.monotonic() - started

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.7)
        os.kill(executor_pid, signal.SIGKILL)
        t.join(150)
        assert not t.is_alive(), "the query did not end within its statement timeout"
        assert outcome["seconds"] > 0.7, f"the query ended before the executor was killed ({outcome['seconds']:.1f} s): the test proves nothing"
        if "rows" in outcome:
            assert same(expected, outcome["rows"]), "after the executor was killed: wrong rows"
            print(f"executor killed: the query finished with the right rows in {outcome['seconds']:.1f} s")
        else:
            print(f"executor killed: the query failed in {outcome['seconds']:.1f} s: {outcome['error']}")
            assert outcome["error"].startswith("58030") and "cluster" in outcome["error"], outcome["error"]
        # The server keeps answering, here and on the cluster's remaining executor.
        cur.execute("SET tidepool.distributed = off")
        q6 = dict(queries)[6]
        here = rows(cur, q6)
        cur.execute("SET tidepool.distributed = on")
        deadline = time.monotonic() + 60
        while True:
            try:
                again = rows(cur, q6)
                break
            except psycopg.Error as e:
                assert time.monotonic() < deadline, f"the cluster never answered again: {e}"
                time.sleep(1)
        assert same(here, again)
        print("cluster: ok")


if __name__ == "__main__":
    main()
