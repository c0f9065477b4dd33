"""SQL for `Condition`s and field ordering on JSON documents, for SQLite and PostgreSQL.

A condition compares one field of a document with a JSON value the way Python compares the
parsed document (so moving a filter from Python into SQL changes no answer): a value of
another JSON type is never equal, and never greater or smaller, which keeps `ne` the exact
negation of `eq`. A key is read from the nested object `under` (a span's `attributes`) when
that object holds it, else from the top level.

Keys and values are always bound parameters. On SQLite a field is found with `json_each`
(matching the key as a value, so no key can break out of a JSON path); on PostgreSQL with
`->` and `?`. PostgreSQL casts only inside `CASE` on the field's JSON type: a condition
never fails on a row whose field holds another type.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import TextClause, bindparam, text

from ggstack.stores.base import Condition

#: Each dialect's JSON type names for a Python value (None, bool, number, str, list/dict).
SQLITE_TYPES = {"null": ("null",), "bool": ("true", "false"), "number": ("integer", "real"), "str": ("text",),
                "json": ("array", "object")}
POSTGRES_TYPES = {"null": ("null",), "bool": ("boolean",), "number": ("number",), "str": ("string",),
                  "json": ("array", "object")}


def value_class(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "str" if isinstance(value, str) else "json"


class FieldSql:
    """SQL fragments for one dialect over a table's JSON column named `data`."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"

    def field(self, key: str, under: str | None, name: str) -> tuple[str, str, dict[str, Any]]:
        """(SQL of the field's value, SQL of its JSON type or NULL when missing, parameters)."""
        params = {f"{name}_k": key}
        if self.postgres:
            key_sql, under_sql = f"CAST(:{name}_k AS text)", f"CAST(:{name}_u AS text)"
            value = f"(data -> {key_sql})"
            if under is not None:
                params[f"{name}_u"] = under
                value = (f"(CASE WHEN jsonb_typeof(data -> {under_sql}) = 'object' AND (data -> {under_sql}) ? {key_sql} "
                         f"THEN data -> {under_sql} -> {key_sql} ELSE data -> {key_sql} END)")
            return value, f"jsonb_typeof({value})", params
        top = f"(SELECT {{col}} FROM json_each(data) WHERE key = :{name}_k)"
        if under is None:
            return top.format(col="value"), top.format(col="type"), params
        params[f"{name}_u"] = under
        nested = (f"(SELECT {{col}} FROM json_each(data, '$') AS o, json_each(o.value) AS i "
                  f"WHERE o.key = :{name}_u AND o.type = 'object' AND i.key = :{name}_k)")
        # a nested field wins even when its value is JSON null (its type 'null' is not SQL NULL)
        kind = f"COALESCE({nested.format(col='i.type')}, {top.format(col='type')})"
        value = (f"(CASE WHEN {nested.format(col='i.type')} IS NOT NULL THEN {nested.format(col='i.value')} "
                 f"ELSE {top.format(col='value')} END)")
        return value, kind, params

    def condition(self, condition: Condition, under: str | None, name: str) -> TextClause:
        """True or false for every row (never SQL NULL), so NOT flips it exactly."""
        value, kind, params = self.field(condition.key, under, name)
        cls = value_class(condition.value)
        types = (POSTGRES_TYPES if self.postgres else SQLITE_TYPES)[cls]
        type_names = ", ".join(f"'{t}'" for t in types)
        params[f"{name}_v"] = self._bound(condition.value, cls)
        same_type = f"COALESCE({kind} IN ({type_names}), FALSE)" if self.postgres else f"COALESCE({kind} IN ({type_names}), 0)"
        if cls == "null":
            missing = f"({kind} IS NULL OR {kind} = 'null')"
            sql = missing if condition.op == "eq" else f"NOT {missing}" if condition.op == "ne" else "1 = 0"
            return text(f"({sql})").bindparams(*self._params(params, sql))
        compare = self._compare(value, cls, condition.op, name)
        if condition.op in ("eq", "gt", "lt"):
            sql = f"(CASE WHEN {same_type} THEN {compare} ELSE 1 = 0 END)"
        else:
            sql = f"(NOT (CASE WHEN {same_type} THEN {compare} ELSE 1 = 0 END))"
        return text(sql).bindparams(*self._params(params, sql))

    def _compare(self, value: str, cls: str, op: str, name: str) -> str:
        symbol = {"eq": "=", "ne": "=", "gt": ">", "lt": "<"}[op]
        if cls == "json":
            if op not in ("eq", "ne"):
                return "1 = 0"  # arrays and objects have no order here
            return f"{value} = CAST(:{name}_v AS jsonb)" if self.postgres else f"json({value}) = json(:{name}_v)"
        if not self.postgres:
            return f"{value} {symbol} :{name}_v"
        if cls == "number":
            return f"({value} #>> '{{}}')::numeric {symbol} :{name}_v"
        if cls == "str":
            return f"({value} #>> '{{}}') COLLATE \"C\" {symbol} :{name}_v"
        return f"({value} #>> '{{}}')::boolean {symbol} :{name}_v"

    def _bound(self, value: Any, cls: str) -> Any:
        if cls == "json":
            return json.dumps(value, separators=(",", ":"))
        if cls == "bool" and not self.postgres:
            return int(value)  # SQLite's json_each gives JSON true/false as 1/0
        return value

    def sort_key(self, key: str, under: str | None, name: str, *, descending: bool = False) -> TextClause:
        """The field as text ('' when missing), for ORDER BY in code-point order."""
        value, _kind, params = self.field(key, under, name)
        if self.postgres:
            sql = f"COALESCE({value} #>> '{{}}', '') COLLATE \"C\""
        else:
            sql = f"COALESCE(CAST({value} AS TEXT), '')"
        sql += " DESC" if descending else " ASC"
        return text(sql).bindparams(*self._params(params, sql))

    @staticmethod
    def _params(params: dict[str, Any], sql: str) -> list[Any]:
        return [bindparam(key, value) for key, value in params.items() if f":{key}" in sql]


def order_terms(sql: FieldSql, order_by: Sequence[str], under: str | None) -> list[TextClause]:
    """ORDER BY terms for keys like `start_time` or `-start_time` (descending)."""
    return [sql.sort_key(key.removeprefix("-"), under, f"o{i}", descending=key.startswith("-"))
            for i, key in enumerate(order_by)]
