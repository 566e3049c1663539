"""Every table has one owning module: the only one whose SQL names it (issue 15.1).

The owner map is written once, in docs/ARCHITECTURE.md ("Tables and their owners"); this test reads
it and the SQL string literals of every module of the packages (docstrings left out), and fails on
a module that names a table it does not own, on a table without an owner, and on an entry of the
"Not yet moved" list that is no longer true (so the list only shrinks).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "crm", "qualification", "capi", "core", "qualibot")
# SQL is written in upper case here; a lower-case "from messages" in an error text is English
_NAMED = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|DELETE FROM|TRUNCATE)\s+(?:ONLY\s+)?([a-z_][a-z0-9_]*)\b")
_OWNER_ROW = re.compile(r"^\|\s*`(\w+)`\s*\|\s*`([\w/]+\.py)`\s*\|", re.M)
_EXCEPTION = re.compile(r"^- `(\w+)` in `([\w/]+\.py)`", re.M)


def relations() -> set[str]:
    sql = "\n".join(p.read_text() for p in sorted((ROOT / "migrations").glob("*.sql")))
    found = re.findall(r"CREATE (?:TABLE|(?:OR REPLACE )?VIEW) (?:IF NOT EXISTS )?(\w+)", sql)
    return set(found)


def owner_map() -> tuple[dict[str, str], set[tuple[str, str]]]:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    owners_part, _, rest = doc.partition("## Tables and their owners")[2].partition("### Not yet moved")
    owners: dict[str, str] = {}
    for table, module in _OWNER_ROW.findall(owners_part):
        assert table not in owners, f"{table} is listed twice in docs/ARCHITECTURE.md"
        owners[table] = module
    exceptions_part = rest.partition("\n## ")[0]
    return owners, set(_EXCEPTION.findall(exceptions_part))


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def tables_named(path: Path, tables: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _docstrings(tree)
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            named.update(t for t in _NAMED.findall(node.value) if t in tables)
    return named


def names_as_literal(path: Path, table: str) -> bool:
    """A string literal that is the table's name (a module that builds its SQL around it)."""
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.Constant) and n.value == table for n in ast.walk(tree))


def sql_users() -> dict[str, set[str]]:
    tables = relations()
    users: dict[str, set[str]] = {t: set() for t in tables}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            for table in tables_named(path, tables):
                users[table].add(module)
    return users


def test_the_scanner_finds_sql_and_skips_docstrings(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text('"""Reads FROM leads in prose."""\nQ = f"SELECT 1 FROM messages m JOIN {x} leads"\n'
                      'U = "UPDATE dialog_analysis SET a = 1"\nE = "no lead from leads here"\n')
    assert tables_named(sample, {"leads", "messages", "dialog_analysis"}) == {"messages", "dialog_analysis"}


def test_every_table_has_exactly_one_owner() -> None:
    owners, exceptions = owner_map()
    users = sql_users()
    assert sorted(set(users) - set(owners)) == [], "tables without an owner in docs/ARCHITECTURE.md"
    assert sorted(set(owners) - set(users)) == [], "owners listed for tables that do not exist"
    for table, module in owners.items():
        assert (ROOT / module).is_file(), f"{table}'s owner {module} does not exist"
        assert module in users[table] or names_as_literal(ROOT / module, table), f"{module} holds no SQL of {table}"
    strays = sorted((t, m) for t, ms in users.items() for m in ms if m != owners[t] and (t, m) not in exceptions)
    assert strays == [], "SQL outside the table's owner: call the owner's functions instead"
    stale = sorted((t, m) for t, m in exceptions if m not in users.get(t, set()))
    assert stale == [], "'Not yet moved' entries that moved: delete them from docs/ARCHITECTURE.md"
