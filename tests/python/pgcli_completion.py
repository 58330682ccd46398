"""pgcli (Debian's, run with the system python3 it is packaged for) against a running
tidepool: its executor's catalog queries (search path, schemas, tables, views, columns,
functions, types, databases, foreign keys) and its completer filled by its own
refreshers, asked what follows `SELECT * FROM cat.` and what goes in `SELECT _ FROM cat.t`.

Usage: /usr/bin/python3 pgcli_completion.py HOST PORT USER PASSWORD
Prints "pgcli: ok"; exits non-zero with the failing check otherwise.
"""

import sys

from pgcli.completion_refresher import CompletionRefresher
from pgcli.pgcompleter import PGCompleter
from pgcli.pgexecute import PGExecute
from prompt_toolkit.document import Document

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


executor = PGExecute("lake", USER, PASSWORD, HOST, PORT, "")
executor.run("CREATE SCHEMA IF NOT EXISTS cat")
for _ in executor.run("CREATE TABLE cat.t (id BIGINT PRIMARY KEY, name TEXT)"):
    pass
for _ in executor.run("CREATE VIEW cat.v AS SELECT id FROM cat.t"):
    pass
check("cat" in list(executor.schemata()), "schemata")
check(("cat", "t") in list(executor.tables()), "tables")
check(("cat", "v") in list(executor.views()), "views")
columns = [(s, t, c) for s, t, c, *_ in executor.table_columns() if s == "cat"]
check(columns == [("cat", "t", "id"), ("cat", "t", "name")], columns)
list(executor.functions())
list(executor.datatypes())
check("lake" in list(executor.databases()), "databases")
list(executor.foreignkeys())

completer = PGCompleter(smart_completion=True)
for name, refresh in CompletionRefresher.refreshers.items():
    refresh(completer, executor)


def complete(text, cursor=None):
    document = Document(text, cursor_position=len(text) if cursor is None else cursor)
    return {c.text for c in completer.get_completions(document, None)}


tables = complete("SELECT * FROM cat.")
check({"t", "v"} <= tables, f"tables of cat: {sorted(tables)[:20]}")
columns = complete("SELECT  FROM cat.t", cursor=len("SELECT "))
check({"id", "name"} <= columns, f"columns of cat.t: {sorted(columns)[:20]}")
print("pgcli: ok")
