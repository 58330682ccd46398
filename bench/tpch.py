"""TPC-H, the 22 queries, on four engines in one run (issue 25); run by bench/tpch.sh.

- DuckDB (PyPI, `threads` = 2) over the Parquet files tpchgen-cli wrote;
- raw DataFusion (PyPI `datafusion`, `target_partitions` = 2) over the same files;
- tidepool over Postgres (psycopg, text results) and over Flight SQL (ADBC), on Delta
  tables loaded with `CREATE TABLE t AS SELECT * FROM read_parquet(...)`.

The queries are DuckDB's tpch extension's (`tpch_queries()`, PyPI
`duckdb-extension-tpch`), sent as written to every engine. Engines take turns: a warm-up
pass on each, then `--runs` rounds of all queries on one engine, then the next; the best
round counts per query (wall time through the client, results fetched), so the slow
phases of a shared machine fall on every engine alike. Prints a line per query and the totals with the geometric
mean of the per-query ratios to DuckDB and to DataFusion.
"""

import argparse
import glob
import math
import os
import sys
import time

TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


def queries():
    import duckdb
    import duckdb_extension_tpch as ext

    path = glob.glob(os.path.join(os.path.dirname(ext.__file__), "**/*.duckdb_extension"), recursive=True)
    con = duckdb.connect(config={"allow_unsigned_extensions": True})
    con.execute(f"LOAD '{path[0]}'")
    return con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()


def duckdb_engine(parquet, memory):
    import duckdb

    config = {"threads": 2}
    if memory:
        config["memory_limit"] = f"{memory >> 20}MiB"
    con = duckdb.connect(config=config)
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{parquet}/{t}.parquet')")
    return lambda q: con.execute(q).fetchall()


def datafusion_engine(parquet, memory, path=None):
    """Raw DataFusion over tpchgen's files, or over the folders `path(table)` names."""
    import datafusion

    config = datafusion.SessionConfig().with_target_partitions(2)
    runtime = datafusion.RuntimeEnvBuilder().with_disk_manager_os()
    if memory:
        runtime = runtime.with_fair_spill_pool(memory)
    ctx = datafusion.SessionContext(config, runtime)
    for t in TABLES:
        ctx.register_parquet(t, path(t) if path else f"{parquet}/{t}.parquet")
    return lambda q: ctx.sql(q).collect()


def lake_files(lake, table):
    """A folder of links to the Parquet files of `table`'s newest version in a tidepool lake
    (`lake/public/table`), from its Delta log's JSON commits (add minus remove)."""
    import json
    import tempfile

    root = os.path.join(lake, "public", table)
    log = os.path.join(root, "_delta_log")
    if glob.glob(os.path.join(log, "*.checkpoint.parquet")):
        sys.exit(f"{log} has a checkpoint: reading it is not implemented here")
    live = set()
    for commit in sorted(glob.glob(os.path.join(log, "*.json"))):
        for line in open(commit):
            action = json.loads(line)
            if "add" in action:
                live.add(action["add"]["path"])
            elif "remove" in action:
                live.discard(action["remove"]["path"])
    folder = tempfile.mkdtemp(prefix=f"tpch-{table}-")
    for i, path in enumerate(sorted(live)):
        os.symlink(os.path.join(root, path), os.path.join(folder, f"{i:05d}.parquet"))
    return folder


def postgres_engine(port, settings):
    import psycopg

    con = psycopg.connect(f"host=127.0.0.1 port={port} user=tidepool dbname=lake", autocommit=True)
    for s in settings:
        con.execute(f"SET {s}")

    def run(q):
        with con.cursor() as cur:
            cur.execute(q)
            return cur.fetchall()

    return run


def flight_engine(port, settings):
    import adbc_driver_flightsql.dbapi as flight

    con = flight.connect(f"grpc://127.0.0.1:{port}")
    for s in settings:
        with con.cursor() as cur:
            cur.execute(f"SET {s}")

    def run(q):
        with con.cursor() as cur:
            cur.execute(q)
            return cur.fetch_arrow_table()

    return run


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--parquet", required=True)
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--flight-port", type=int, required=True)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--only", default="", help="comma-separated query numbers")
    p.add_argument("--memory-limit", type=int, default=0, help="bytes for DuckDB and DataFusion (tidepool's is its server's)")
    p.add_argument("--set", action="append", default=[], help="tidepool session setting name=value")
    p.add_argument("--lake", default="", help="also run raw DataFusion over this tidepool lake's Parquet files")
    p.add_argument("--cluster", action="store_true",
                   help="the server has [cluster] scheduler: run tidepool pg with tidepool.distributed off and on")
    a = p.parse_args()

    qs = queries()
    if a.only:
        wanted = {int(x) for x in a.only.split(",")}
        qs = [(n, q) for n, q in qs if n in wanted]
    # Engines take turns: a warm-up pass per engine, then `--runs` rounds, each running
    # every query on one engine, then on the next. The best of the rounds counts per
    # query, so a slow phase of this (noisy, shared) machine hits every engine alike
    # instead of the one that happened to run then.
    engines = [
        ("duckdb", lambda: duckdb_engine(a.parquet, a.memory_limit)),
        ("datafusion", lambda: datafusion_engine(a.parquet, a.memory_limit)),
        ("tidepool pg", lambda: postgres_engine(a.pg_port, a.set)),
        ("tidepool flight", lambda: flight_engine(a.flight_port, a.set)),
    ]
    if a.lake:
        engines.insert(2, ("df on lake", lambda: datafusion_engine(None, a.memory_limit, lambda t: lake_files(a.lake, t))))
    if a.cluster:
        engines[engines.index(next(e for e in engines if e[0] == "tidepool pg"))] = (
            "tidepool pg", lambda: postgres_engine(a.pg_port, a.set + ["tidepool.distributed = off"]))
        engines.insert(len(engines) - 1, (
            "tidepool cluster", lambda: postgres_engine(a.pg_port, a.set + ["tidepool.distributed = on"])))
        engines[-1] = ("tidepool flight", lambda: flight_engine(a.flight_port, a.set + ["tidepool.distributed = off"]))
    names = [n for n, _ in engines]
    runs = {n: make() for n, make in engines}
    times = {n: {} for n in names}
    failed = set()
    answers = {}  # the warm-up's rows of the two tidepool pg engines, compared in --cluster
    for round in range(a.runs + 1):
        for name in names:
            for nr, q in qs:
                if (name, nr) in failed:
                    continue
                try:
                    t0 = time.perf_counter()
                    got = runs[name](q)
                    took = time.perf_counter() - t0
                    if round == 0 and name in ("tidepool pg", "tidepool cluster"):
                        answers[(name, nr)] = got
                except Exception as e:  # a failing query is reported, not fatal
                    failed.add((name, nr))
                    times[name].pop(nr, None)
                    print(f"  q{nr:02d} on {name}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
                    continue
                if round > 0:  # round 0 warms up: file footers, caches, plans
                    times[name][nr] = min(took, times[name].get(nr, took))
    lake = "df on lake" in names
    print(f"{'query':<6}" + "".join(f"{n:>17}" for n in names) + "   pg/duckdb  pg/datafusion"
          + ("  pg/df-on-lake" if lake else ""), flush=True)
    for nr, q in qs:
        line = f"q{nr:02d}  "
        for name in names:
            s = times[name].get(nr)
            line += f"{s * 1000:15.0f}ms" if s is not None else f"{'FAILED':>17}"
        d, f, t = (times[n].get(nr) for n in ("duckdb", "datafusion", "tidepool pg"))
        if d and t:
            line += f"{t / d:11.2f}x"
        if f and t:
            line += f"{t / f:14.2f}x"
        l = times.get("df on lake", {}).get(nr)
        if l and t:
            line += f"{t / l:15.2f}x"
        print(line, flush=True)

    print()
    print(f"{'engine':<16}{'total (s)':>10}{'queries':>9}{'geomean vs duckdb':>19}{'geomean vs datafusion':>23}")
    for name in names:
        done = times[name]
        total = sum(done.values())

        def geomean(base):
            common = [nr for nr in done if nr in times[base]]
            if not common:
                return float("nan")
            return math.exp(sum(math.log(done[nr] / times[base][nr]) for nr in common) / len(common))

        print(
            f"{name:<16}{total:10.2f}{len(done):>9}{geomean('duckdb'):19.2f}{geomean('datafusion'):23.2f}"
        )
    failed = [(name, nr) for name in names for nr, _ in qs if nr not in times[name]]
    if failed:
        print("failed: " + ", ".join(f"q{nr:02d} on {name}" for name, nr in failed))
    if a.cluster:
        check_cluster(a, qs, answers)


def same(a, b):
    """Rows equal, numbers within a relative 1e-9 (sums differ in their last bits with the
    order rows are added in)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if len(x) != len(y):
            return False
        for u, v in zip(x, y):
            if isinstance(u, bool) or isinstance(v, bool) or not all(
                isinstance(w, (int, float)) or hasattr(w, "is_finite") for w in (u, v)
            ):
                if u != v:
                    return False
            elif not math.isclose(float(u), float(v), rel_tol=1e-9, abs_tol=1e-9):
                return False
    return True


def check_cluster(a, qs, answers):
    """Every cluster answer equal to the single-node one, and how many queries EXPLAIN
    says went to the cluster (with their stage counts)."""
    import psycopg

    con = psycopg.connect(f"host=127.0.0.1 port={a.pg_port} user=tidepool dbname=lake", autocommit=True)
    con.execute("SET tidepool.distributed = on")
    equal, remote, stages = 0, 0, []
    for nr, q in qs:
        here, there = answers.get(("tidepool pg", nr)), answers.get(("tidepool cluster", nr))
        if here is not None and there is not None:
            if same(here, there):
                equal += 1
            else:
                print(f"q{nr:02d}: {len(here)} rows on one node, {len(there)} on the cluster: DIFFERENT")
        plan = "\n".join(r[1] for r in con.execute("EXPLAIN " + q).fetchall() if r[0] == "distributed_plan")
        if plan.startswith("runs on the cluster"):
            remote += 1
            stages.append(f"q{nr:02d} {plan.count('Stage ')}")
        else:
            print(f"q{nr:02d} stays on the server: {plan.splitlines()[0] if plan else 'no distributed_plan row'}")
    print(f"cluster: {equal}/{len(qs)} answers equal to the server alone (rel. tol. 1e-9), "
          f"{remote}/{len(qs)} planned on the cluster; stages per query: {', '.join(stages)}")


if __name__ == "__main__":
    main()
