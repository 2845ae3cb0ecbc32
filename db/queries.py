"""Named SQL queries, loaded once from db/queries/*.sql.

Each block starts with a header line `-- name --`, then a comment line saying what it
does, then the SQL with %(param)s placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

QUERY_DIR = Path(__file__).parent / "queries"
_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a .sql file into its named blocks."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def all_queries() -> dict[str, str]:
    """Every named query of every file in db/queries."""
    queries: dict[str, str] = {}
    for path in sorted(QUERY_DIR.glob("*.sql")):
        for name, sql in parse(path.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined in two files")
            queries[name] = sql
    return queries


def sql(name: str) -> str:
    """The SQL text of one named query."""
    return all_queries()[name]


def by_target(rows: Mapping[int, Sequence[Any]], *names: str) -> dict[str, list[Any]]:
    """Rows keyed by target id as an unnest's parameters: target_ids ascending, a list a column."""
    ids = sorted(rows)
    return {"target_ids": ids, **{name: [rows[i][n] for i in ids] for n, name in enumerate(names)}}
