"""Long IN lists over s.accounts (bench/pgbench.sh's tables): best of three executions
of `SELECT count(*) ... WHERE id IN (...)` with N `$n` parameters and with N literals,
unprepared (psycopg 3 `execute`). Usage: python in_list.py PORT USER DB NAME."""
import sys
import time

import psycopg

port, user, db, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with psycopg.connect(
    f"host=127.0.0.1 port={port} user={user} dbname={db}", prepare_threshold=None
) as c:
    for n in (1000, 16000, 65535):
        ids = list(range(n))
        forms = {
            "parameters": ("%s," * n).rstrip(","),
            "literals": ",".join(map(str, ids)),
        }
        for form, values in forms.items():
            sql = f"SELECT count(*) FROM s.accounts WHERE id IN ({values})"
            args = ids if form == "parameters" else None
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                (count,) = c.execute(sql, args).fetchone()
                best = min(best, time.perf_counter() - t)
            assert count == n - 1, f"{name} {form} {n}: {count}"
            print(f"in-list {name:26} {n:6} values as {form:10} {best * 1000:7.0f} ms")
