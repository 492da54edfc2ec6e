"""Keyset pagination in SQL: the rows after a sort key, for every paginated list.

A page is ``ORDER BY <columns> LIMIT n`` below ``after(columns, key)``, where ``key`` is the sort
key of the last row of the previous page (``api.pagination`` turns it into an opaque cursor). The
comparison is lexicographic — ``(a, b) > (x, y)`` is ``a > x OR (a = x AND b > y)`` — written out,
since row-value comparison is not portable. The columns must make a unique key (end with an id or a
per-user sequence), so no row is skipped or repeated between pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, true


def after(
    columns: Sequence[Any], key: Sequence[Any] | None, *, descending: bool = False
) -> ColumnElement[bool]:
    """The rows that sort after ``key`` by ``columns`` (all ascending, or all ``descending``)."""
    if key is None:
        return true()
    if len(key) != len(columns):
        raise ValueError(f"a sort key of {len(columns)} values was expected, got {len(key)}")
    branches = []
    for position, (column, value) in enumerate(zip(columns, key, strict=True)):
        equal = [c == v for c, v in zip(columns[:position], key[:position], strict=True)]
        beyond = column < value if descending else column > value
        branches.append(and_(*equal, beyond))
    return or_(*branches)


def order(columns: Sequence[Any], *, descending: bool = False) -> list[Any]:
    """The ``ORDER BY`` clauses that go with ``after``."""
    return [column.desc() if descending else column.asc() for column in columns]
