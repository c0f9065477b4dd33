"""`MetadataStore` on SQLAlchemy 2: one table of JSON documents, SQLite or PostgreSQL.

Blocking SQL runs in worker threads (anyio.to_thread). Every write transaction takes the
write lock up front (SQLite `BEGIN IMMEDIATE`, PostgreSQL row locks via FOR UPDATE), so a
read-modify-write never interleaves with another and no update is lost.
"""

from __future__ import annotations

import builtins
import copy
import functools
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar, overload

import anyio.to_thread
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    create_engine,
    delete,
    event,
    false,
    func,
    inspect,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url

from ggstack.core.access import creator, owner_scope
from ggstack.core.errors import AlreadyExistsError, InvalidValueError, UnknownIdError
from ggstack.stores.base import Condition, Order, Page, Update, Where
from ggstack.stores.conditions import FieldSql, order_terms

log = logging.getLogger("ggstack.stores.sql")

T = TypeVar("T")

#: `parent=None` is stored as "" so the unique key (kind, parent, id) works on every backend
#: (NULLs are never equal to each other in a UNIQUE constraint).
NO_PARENT = ""

_metadata = MetaData()

documents = Table(
    "ggstack_documents",
    _metadata,
    # The surrogate key doubles as insertion order, the tie-break for equal created_at.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("parent", String(255), nullable=False, default=NO_PARENT),
    Column("id", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("data", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    # The API key name that created a top-level document (ggstack.core.access); NULL: nobody's.
    Column("owner", String(255), nullable=True),
    UniqueConstraint("kind", "parent", "id", name="uq_ggstack_documents_key"),
    Index("ix_ggstack_documents_order", "kind", "parent", "created_at", "seq"),
)


# SQL counts are signed 64-bit: a larger offset or limit (the specs leave them unbounded) would overflow
# the driver, so it is cut to a count no table reaches, which reads the same rows. One less than the top
# leaves room for the extra row a page reads to learn whether more follow.
_SQL_COUNT_MAX = 2**63 - 2


@overload
def _sql_count(n: int) -> int: ...
@overload
def _sql_count(n: None) -> None: ...
@overload
def _sql_count(n: int | None) -> int | None: ...
def _sql_count(n: int | None) -> int | None:
    """An offset or limit as SQL can take it: negatives read as 0, huge values as the largest count."""
    return None if n is None else min(max(n, 0), _SQL_COUNT_MAX)


#: Rows per upsert statement: 6 parameters each stays far below SQLite's 32766 and
#: PostgreSQL's 65535 parameters per statement.
UPSERT_ROWS = 500
#: Ids per IN list of `get_many` (one parameter each).
IN_LIST = 500
#: Documents as SQLAlchemy's JSON type writes them (`json.dumps` with its defaults).
JSON_TEXT = json.JSONEncoder()


@functools.lru_cache(maxsize=64)
def upsert_sql(dialect: str, rows: int, stamped: bool) -> str:
    """put_many's statement for `rows` rows of (kind, parent, id, created_at, data as JSON text,
    owner), in the driver's parameter style; `stamped` rows also replace created_at on conflict."""
    mark, data = ("?", "?") if dialect == "sqlite" else ("%s", "CAST(%s AS JSONB)")
    row = f"({mark}, {mark}, {mark}, {mark}, {data}, {mark})"
    changes = "data = excluded.data" + (", created_at = excluded.created_at" if stamped else "")
    return (f"INSERT INTO {documents.name} (kind, parent, id, created_at, data, owner) VALUES "
            f"{', '.join([row] * rows)} ON CONFLICT (kind, parent, id) DO UPDATE SET {changes}")


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _json_value(column: Any, value: Any) -> Any:
    """The typed accessor SQLAlchemy needs to compare a JSON field portably."""
    if isinstance(value, bool):
        return column.as_boolean()
    if isinstance(value, int):
        return column.as_integer()
    if isinstance(value, float):
        return column.as_float()
    return column.as_string()


class SqlMetadataStore:
    """The SQL `MetadataStore`. Build with `SqlMetadataStore.open(url)`; `close()` when done."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jsonb = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str) -> SqlMetadataStore:
        """Connect and create the table if missing (blocking; call at start-up)."""
        if _is_sqlite(url):
            database = make_url(url).database
            if not database or database == ":memory:":
                # Each pooled connection would get its own empty in-memory database.
                raise ValueError("SqlMetadataStore needs a SQLite file, not an in-memory database")
        engine = open_engine(url)
        _metadata.create_all(engine)
        _add_owner_column(engine)
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    @property
    def shared(self) -> bool:
        """True when other processes may use this database at once (PostgreSQL), so background
        work is claimed with leases; a SQLite file belongs to one server process."""
        return not _is_sqlite(str(self._engine.url))

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query (health)."""
        await self._run(self._read, lambda conn: conn.execute(text("SELECT 1")).scalar())

    # -- plumbing -------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(fn, *args))

    def _write(self, fn: Callable[[Connection], T]) -> T:
        with self._engine.connect() as conn:
            conn.execution_options(ggstack_write=True)
            with conn.begin():
                return fn(conn)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._engine.connect() as conn, conn.begin():
            return fn(conn)

    @staticmethod
    def _key(kind: str, id: str, parent: str | None) -> Any:
        return and_(documents.c.kind == kind, documents.c.parent == (parent or NO_PARENT),
                    documents.c.id == id, *_owned(kind, parent))

    def _scope(self, kind: str, parent: str | None, where: Where | None) -> list[Any]:
        clauses = [documents.c.kind == kind, documents.c.parent == (parent or NO_PARENT), *_owned(kind, parent)]
        for key, value in (where or {}).items():
            if value is None:
                clauses.append(documents.c.data[key].as_string().is_(None))
                continue
            values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
            clauses.append(or_(false(), *(self._equals(key, v) for v in values)))
        return clauses

    def _equals(self, key: str, value: Any) -> Any:
        if self._jsonb:
            # Containment compares JSON values as JSON; a typed cast (->> then ::integer)
            # would fail on any row whose value has another type.
            return type_coerce(documents.c.data, JSONB).contains({key: value})
        return _json_value(documents.c.data[key], value) == value

    # -- writes ---------------------------------------------------------------------------

    @staticmethod
    def _created_at(data: Mapping[str, Any], created_at: int | None) -> int | None:
        if created_at is not None:
            return int(created_at)
        for key in ("created_at", "created"):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    def _put_many_sync(self, kind: str, docs: Sequence[tuple[str, Mapping[str, Any]]],
                       parent: str | None, created_at: int | None) -> None:
        """INSERT ... ON CONFLICT DO UPDATE, many rows per statement.

        An upsert is atomic on both backends, so two writers of the same new key cannot both
        insert, and one statement for the batch costs far less than an UPDATE then an INSERT
        per document. The statement is plain SQL with the documents already JSON and many rows
        in one VALUES list: run row by row (executemany), the driver let go of the GIL and took
        it back around every row, and the telemetry flusher's hundreds of spans per flush made
        the event loop hand the GIL over as many times (a third of what a span cost).
        """
        now = int(time.time())
        # One row per id (a statement may not touch a row twice); the last one given wins.
        latest: dict[str, tuple[int, str, bool]] = {}
        for id, data in docs:
            stamp = self._created_at(data, created_at)
            latest[id] = (now if stamp is None else stamp, JSON_TEXT.encode(data), stamp is not None)
        self._upsert(kind, parent, latest)

    def _upsert(self, kind: str, parent: str | None, latest: dict[str, tuple[int, str, bool]]) -> None:
        """Write id -> (created_at, JSON text, whether created_at replaces a stored one)."""
        owner = creator() if parent is None else None
        stored_parent = parent or NO_PARENT
        # A stamped row sets created_at; one without keeps the stored created_at on update.
        groups = {stamped: [(kind, stored_parent, id, at, text, owner) for id, (at, text, has) in latest.items()
                            if has == stamped] for stamped in (True, False)}
        dialect = self._engine.dialect.name

        def work(conn: Connection) -> None:
            self._refuse_others(conn, kind, parent, list(latest))
            for stamped, rows in groups.items():
                for start in range(0, len(rows), UPSERT_ROWS):
                    part = rows[start:start + UPSERT_ROWS]
                    conn.exec_driver_sql(upsert_sql(dialect, len(part), stamped),
                                         tuple(itertools.chain.from_iterable(part)))

        self._write(work)

    @staticmethod
    def _refuse_others(conn: Connection, kind: str, parent: str | None, ids: list[str]) -> None:
        """An id another key owns is taken: a write must neither replace nor reveal it."""
        if parent is not None or owner_scope(kind) is None:
            return
        query = select(documents.c.id).where(documents.c.kind == kind, documents.c.parent == NO_PARENT,
                                             documents.c.id.in_(ids), *_not_owned(kind))
        taken = conn.execute(query).scalars().first()
        if taken is not None:
            raise AlreadyExistsError(f"'{taken}' already exists")

    async def put(self, kind: str, id: str, data: Mapping[str, Any], *, parent: str | None = None,
                  created_at: int | None = None) -> None:
        await self._run(self._put_many_sync, kind, [(id, data)], parent, created_at)

    async def put_many(self, kind: str, docs: Sequence[tuple[str, Mapping[str, Any]]], *,
                       parent: str | None = None, created_at: int | None = None) -> None:
        await self._run(self._put_many_sync, kind, list(docs), parent, created_at)

    async def put_json(self, kind: str, rows: Sequence[tuple[str, int, str]]) -> None:
        """`put_many` of top-level documents their writer has already made JSON text: (id,
        created_at, text). The telemetry flusher writes spans this way, so a span is encoded
        once, as text, rather than built as a dict and then encoded here."""
        await self._run(self._put_json_sync, kind, list(rows))

    def _put_json_sync(self, kind: str, rows: Sequence[tuple[str, int, str]]) -> None:
        self._upsert(kind, None, {id: (at, text, True) for id, at, text in rows})

    async def delete(self, kind: str, id: str, *, parent: str | None = None) -> bool:
        def work(conn: Connection) -> bool:
            return bool(conn.execute(delete(documents).where(self._key(kind, id, parent))).rowcount)

        return await self._run(self._write, work)

    async def delete_many(self, kind: str, ids: Sequence[str], *, parent: str | None = None) -> int:
        def work(conn: Connection) -> int:
            deleted = 0
            for start in range(0, len(ids), 500):  # bound the statement's parameter count
                batch = list(ids[start:start + 500])
                deleted += conn.execute(delete(documents).where(*self._scope(kind, parent, None),
                                                                documents.c.id.in_(batch))).rowcount
            return deleted

        return await self._run(self._write, work)

    async def delete_oldest(self, kind: str, keep: int) -> int:
        """Delete the top-level documents of `kind` beyond the newest `keep` (by created_at, then
        insertion) in one statement that reads no document; returns how many went."""
        def work(conn: Connection) -> int:
            scope = self._scope(kind, None, None)
            beyond = (select(documents.c.seq).where(*scope)
                      .order_by(documents.c.created_at.desc(), documents.c.seq.desc()).offset(max(keep, 0)))
            return conn.execute(delete(documents).where(*scope, documents.c.seq.in_(beyond))).rowcount

        return await self._run(self._write, work)

    async def delete_children(self, kind: str, parent: str) -> int:
        def work(conn: Connection) -> int:
            return conn.execute(delete(documents).where(*self._scope(kind, parent, None))).rowcount

        return await self._run(self._write, work)

    async def update(self, kind: str, id: str, change: Update, *, parent: str | None = None,
                     skip_locked: bool = False) -> dict[str, Any] | None:
        def work(conn: Connection) -> dict[str, Any] | None:
            # SKIP LOCKED (PostgreSQL): a row another transaction holds reads as absent instead
            # of waiting; SQLite ignores it (BEGIN IMMEDIATE already serialises every write).
            row = conn.execute(select(documents.c.seq, documents.c.data)
                               .where(self._key(kind, id, parent)).with_for_update(skip_locked=skip_locked)).first()
            if row is None:
                return None
            current = copy.deepcopy(row.data)
            if callable(change):
                returned = change(current)
                new = current if returned is None else dict(returned)
            else:
                new = {**current, **change}
            conn.execute(update(documents).where(documents.c.seq == row.seq).values(data=new))
            return new

        return await self._run(self._write, work)

    # -- reads ----------------------------------------------------------------------------

    async def get(self, kind: str, id: str, *, parent: str | None = None) -> dict[str, Any] | None:
        def work(conn: Connection) -> dict[str, Any] | None:
            return conn.execute(select(documents.c.data).where(self._key(kind, id, parent))).scalar()

        return await self._run(self._read, work)

    async def get_many(self, kind: str, ids: Sequence[str], *,
                       parent: str | None = None) -> dict[str, dict[str, Any]]:
        def work(conn: Connection) -> dict[str, dict[str, Any]]:
            wanted, found = list(dict.fromkeys(ids)), dict[str, dict[str, Any]]()
            for start in range(0, len(wanted), IN_LIST):
                query = select(documents.c.id, documents.c.data).where(
                    *self._scope(kind, parent, None), documents.c.id.in_(wanted[start:start + IN_LIST]))
                found.update((doc_id, data) for doc_id, data in conn.execute(query))
            return found

        return await self._run(self._read, work)

    async def count(self, kind: str, *, parent: str | None = None, where: Where | None = None) -> int:
        def work(conn: Connection) -> int:
            query = select(func.count()).select_from(documents).where(*self._scope(kind, parent, where))
            return int(conn.execute(query).scalar_one())

        return await self._run(self._read, work)

    async def count_by(self, kind: str, field: str, *, parent: str | None = None) -> dict[Any, int]:
        def work(conn: Connection) -> dict[Any, int]:
            value = documents.c.data[field].as_string()
            query = (select(value, func.count()).select_from(documents)
                     .where(*self._scope(kind, parent, None)).group_by(value))
            return {key: int(n) for key, n in conn.execute(query)}

        return await self._run(self._read, work)

    async def list(self, kind: str, *, parent: str | None = None, after: str | None = None,
                   before: str | None = None, limit: int | None = 20, order: Order = "desc",
                   where: Where | None = None, offset: int = 0) -> Page:
        if order not in ("asc", "desc"):
            raise InvalidValueError(f"order must be 'asc' or 'desc', not {order!r}", field="order")
        if limit is not None and limit < 1:
            raise InvalidValueError("limit must be at least 1", field="limit")
        return await self._run(self._read, partial(self._list_sync, kind, parent, after, before,
                                                   _sql_count(limit), order, where, _sql_count(offset)))

    def _cursor(self, conn: Connection, kind: str, parent: str | None, id: str, param: str) -> Any:
        row = conn.execute(select(documents.c.created_at, documents.c.seq)
                           .where(self._key(kind, id, parent))).first()
        if row is None:
            raise UnknownIdError(f"{param}='{id}' is not an item of this list", field=param)
        return row

    def _list_sync(self, kind: str, parent: str | None, after: str | None, before: str | None,
                   limit: int | None, order: Order, where: Where | None, offset: int,
                   conn: Connection) -> Page:
        created, seq = documents.c.created_at, documents.c.seq
        clauses = self._scope(kind, parent, where)
        # "Later in the list" means newer for desc and older for asc.
        for cursor_id, param, later in ((after, "after", True), (before, "before", False)):
            if cursor_id is None:
                continue
            at = self._cursor(conn, kind, parent, cursor_id, param)
            if later == (order == "asc"):
                clauses.append(or_(created > at.created_at, and_(created == at.created_at, seq > at.seq)))
            else:
                clauses.append(or_(created < at.created_at, and_(created == at.created_at, seq < at.seq)))
        # Paging backwards from `before` walks the list in reverse, then flips the page.
        backwards = before is not None and after is None
        ascending = (order == "asc") != backwards
        query = select(documents.c.id, documents.c.data).where(*clauses).order_by(
            *((created.asc(), seq.asc()) if ascending else (created.desc(), seq.desc())))
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit + 1)
        rows = list(conn.execute(query).all())
        has_more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        if backwards:
            rows.reverse()
        return Page(items=[row.data for row in rows], has_more=has_more,
                    first_id=rows[0].id if rows else None, last_id=rows[-1].id if rows else None)

    async def find(self, kind: str, *, conditions: Sequence[Condition] = (), under: str | None = None,
                   order_by: Sequence[str] = (), first_per: str | None = None,
                   created: tuple[int | None, int | None] = (None, None), offset: int = 0,
                   limit: int | None = None) -> builtins.list[dict[str, Any]]:
        query = self._found(kind, conditions, under, order_by, first_per, created, None)
        offset, limit = _sql_count(offset), _sql_count(limit)
        if offset > 0:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        rows = await self._run(self._read, lambda conn: conn.execute(query).all())
        return [row.data for row in rows]

    async def scan(self, kind: str, *, conditions: Sequence[Condition] = (), under: str | None = None,
                   created: tuple[int | None, int | None] = (None, None),
                   batch: int = 500) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        after: tuple[int, int] | None = None
        while True:
            query = self._found(kind, conditions, under, (), None, created, after).limit(batch)
            rows = await self._run(self._read, lambda conn, q=query: conn.execute(q).all())
            if not rows:
                return
            yield [row.data for row in rows]
            if len(rows) < batch:
                return
            after = (rows[-1].created_at, rows[-1].seq)

    def _found(self, kind: str, conditions: Sequence[Condition], under: str | None, order_by: Sequence[str],
               first_per: str | None, created: tuple[int | None, int | None], after: tuple[int, int] | None) -> Any:
        """The SELECT behind find/scan: (data, created_at, seq) rows in order."""
        clauses = [documents.c.kind == kind, documents.c.parent == NO_PARENT, *_owned(kind, None)]
        low, high = created
        if low is not None:
            clauses.append(documents.c.created_at >= low)
        if high is not None:
            clauses.append(documents.c.created_at <= high)
        source: Any = documents
        outer: list[Any] = clauses
        if first_per is not None:
            # The window ranks each group in list order before any condition removes a row.
            rank = func.row_number().over(partition_by=documents.c.data[first_per].as_string(),
                                          order_by=(documents.c.created_at, documents.c.seq))
            source = select(documents.c.data, documents.c.created_at, documents.c.seq,
                            rank.label("nth")).where(*clauses).subquery("ranked")
            outer = [source.c.nth == 1]
        fields = FieldSql(self._engine.dialect.name)
        outer = outer + [fields.condition(c, under, f"c{i}") for i, c in enumerate(conditions)]
        created_at, seq = source.c.created_at, source.c.seq
        if after is not None:
            outer.append(or_(created_at > after[0], and_(created_at == after[0], seq > after[1])))
        return (select(source.c.data, created_at, seq).select_from(source).where(*outer)
                .order_by(*order_terms(fields, order_by, under), created_at, seq))


def _owned(kind: str, parent: str | None) -> list[Any]:
    """The clause that hides other keys' top-level documents (none for children: their parent
    was checked to reach them)."""
    owner = owner_scope(kind) if parent is None else None
    return [] if owner is None else [documents.c.owner == owner]


def _not_owned(kind: str) -> list[Any]:
    owner = owner_scope(kind)
    return [] if owner is None else [or_(documents.c.owner.is_(None), documents.c.owner != owner)]


def _add_owner_column(engine: Engine) -> None:
    """Databases made before access control get the column (NULL: visible to admin keys only)."""
    if "owner" in {column["name"] for column in inspect(engine).get_columns(documents.name)}:
        return
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {documents.name} ADD COLUMN owner VARCHAR(255)"))


def open_engine(url: str) -> Engine:
    """An engine for ggstack's tables: on SQLite WAL and write transactions that take the lock
    up front (see sqlite_on_begin); elsewhere a pool that checks connections before use."""
    if not _is_sqlite(url):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", sqlite_on_connect)
    event.listen(engine, "begin", sqlite_on_begin)
    return engine


def sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 driver (it skips it for SELECT) so sqlite_on_begin
    # can choose IMMEDIATE for writers; WAL lets readers run while a writer holds the lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("ggstack_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
