"""SqlMetadataStore on a real SQLite file in a tmp dir."""

from __future__ import annotations

import threading

import anyio
import pytest

from ggstack.core.errors import AlreadyExistsError, InvalidValueError, UnknownIdError
from ggstack.stores.base import Condition
from ggstack.stores.sql import SqlMetadataStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store_url(tmp_path) -> str:
    """tests/e2e/test_store_postgres.py runs this whole module with a PostgreSQL URL here."""
    return f"sqlite:///{tmp_path / 'meta.db'}"


@pytest.fixture
def store(store_url):
    s = SqlMetadataStore.open(store_url)
    yield s
    s.close()


async def fill(store, n: int, *, kind: str = "file", parent: str | None = None) -> list[str]:
    """n documents; ids deliberately not in insertion order, several sharing a created_at."""
    ids = [f"id-{(i * 7) % n:03d}" for i in range(n)]
    for i, doc_id in enumerate(ids):
        await store.put(kind, doc_id, {"id": doc_id, "n": i, "status": "odd" if i % 2 else "even"},
                        parent=parent, created_at=1000 + i // 3)
    return ids


async def test_put_get_replace_delete(store):
    await store.put("file", "f1", {"id": "f1", "bytes": 3, "created_at": 55})
    assert await store.get("file", "f1") == {"id": "f1", "bytes": 3, "created_at": 55}
    assert await store.get("file", "nope") is None
    await store.put("file", "f1", {"id": "f1", "bytes": 4})
    assert (await store.get("file", "f1"))["bytes"] == 4
    assert await store.delete("file", "f1") is True
    assert await store.delete("file", "f1") is False
    assert await store.get("file", "f1") is None


async def test_get_many_reads_those_that_exist_under_their_parent(store):
    await store.put("vector_store_file", "a", {"filename": "a.txt"}, parent="vs_1")
    await store.put("vector_store_file", "b", {"filename": "b.txt"}, parent="vs_1")
    await store.put("vector_store_file", "c", {"filename": "c.txt"}, parent="vs_2")
    assert await store.get_many("vector_store_file", ["b", "a", "c", "nope", "a"], parent="vs_1") == {
        "a": {"filename": "a.txt"}, "b": {"filename": "b.txt"}}
    assert await store.get_many("vector_store_file", []) == {}
    ids = [f"f{i}" for i in range(1200)]  # more than one IN list
    await store.put_many("file", [(i, {"id": i}) for i in ids])
    assert await store.get_many("file", ids) == {i: {"id": i} for i in ids}


async def test_same_id_under_different_parents_is_two_documents(store):
    await store.put("vector_store_file", "file-1", {"status": "a"}, parent="vs_1")
    await store.put("vector_store_file", "file-1", {"status": "b"}, parent="vs_2")
    assert (await store.get("vector_store_file", "file-1", parent="vs_1"))["status"] == "a"
    assert (await store.get("vector_store_file", "file-1", parent="vs_2"))["status"] == "b"
    assert await store.get("vector_store_file", "file-1") is None
    assert await store.delete_children("vector_store_file", "vs_1") == 1
    assert await store.count("vector_store_file", parent="vs_2") == 1


async def test_pagination_desc_walks_newest_first_without_gaps(store):
    ids = await fill(store, 10)
    expected = list(reversed(ids))  # desc = newest first; equal created_at -> later insert first
    seen, after = [], None
    while True:
        page = await store.list("file", limit=3, after=after)
        seen += [item["id"] for item in page.items]
        assert page.first_id == page.items[0]["id"] and page.last_id == page.items[-1]["id"]
        if not page.has_more:
            break
        after = page.last_id
    assert seen == expected


async def test_pagination_asc_and_before(store):
    ids = await fill(store, 10)
    page = await store.list("file", limit=4, order="asc")
    assert [i["id"] for i in page.items] == ids[:4] and page.has_more
    page = await store.list("file", limit=4, order="asc", after=ids[7])
    assert [i["id"] for i in page.items] == ids[8:] and not page.has_more
    # `before` pages backwards but returns the page in list order.
    page = await store.list("file", limit=3, order="asc", before=ids[6])
    assert [i["id"] for i in page.items] == ids[3:6] and page.has_more
    page = await store.list("file", limit=3, order="desc", before=ids[2])
    assert [i["id"] for i in page.items] == [ids[5], ids[4], ids[3]] and page.has_more
    page = await store.list("file", limit=10, order="desc", before=ids[7])
    assert [i["id"] for i in page.items] == [ids[9], ids[8]] and not page.has_more
    page = await store.list("file", limit=None, order="asc", after=ids[2], before=ids[6])
    assert [i["id"] for i in page.items] == ids[3:6]


async def test_empty_list_and_unknown_cursor(store):
    page = await store.list("file")
    assert page.items == [] and not page.has_more and page.first_id is None and page.last_id is None
    with pytest.raises(InvalidValueError) as err:
        await store.list("file", after="missing")
    assert err.value.field == "after"
    with pytest.raises(InvalidValueError):
        await store.list("file", order="sideways")


async def test_offsets_and_limits_past_64_bits_read_like_any_large_count(store):
    """The specs leave start_index/limit unbounded; a 24-digit one overflowed the driver (a 500)."""
    ids = await fill(store, 5)
    huge = 101940577120179766427648
    assert (await store.list("file", offset=huge, order="asc")).items == []
    whole = await store.list("file", limit=huge, order="asc")
    assert [d["id"] for d in whole.items] == [d["id"] for d in (await store.list("file", limit=None, order="asc")).items]
    assert len(whole.items) == len(ids) and not whole.has_more
    assert await store.find("file", offset=huge) == []
    assert len(await store.find("file", limit=huge)) == len(ids)


async def test_where_filters_on_json_keys(store):
    await store.put("batch", "b1", {"status": "completed", "n": 1, "ok": True})
    await store.put("batch", "b2", {"status": "failed", "n": 2, "ok": False})
    await store.put("batch", "b3", {"status": "completed", "n": 3, "ok": True, "model": "x"})
    await store.put("batch", "b4", {"status": "in_progress", "n": 2.5, "ok": False})

    async def ids(**where):
        return sorted(d["n"] for d in (await store.list("batch", limit=None, where=where)).items)

    assert await ids(status="completed") == [1, 3]
    assert await ids(status="completed", n=3) == [3]
    assert await ids(ok=True) == [1, 3]
    assert await ids(ok=False) == [2, 2.5]
    assert await ids(n=2.5) == [2.5]
    assert await ids(status=["failed", "in_progress"]) == [2, 2.5]
    assert await ids(model=None) == [1, 2, 2.5]
    assert await ids(status=[]) == []
    assert await store.count("batch", where={"status": "completed"}) == 2


async def test_count_by_groups_by_value(store):
    for i, status in enumerate(["completed", "completed", "failed", "in_progress", "completed"]):
        await store.put("vsf", f"f{i}", {"status": status}, parent="vs")
    await store.put("vsf", "other", {"status": "failed"}, parent="vs_other")
    await store.put("vsf", "nostatus", {}, parent="vs")
    assert await store.count_by("vsf", "status", parent="vs") == {
        "completed": 3, "failed": 1, "in_progress": 1, None: 1}


async def test_update_patch_and_function(store):
    await store.put("vs", "v", {"name": "a", "usage": 0})
    assert await store.update("vs", "v", {"name": "b"}) == {"name": "b", "usage": 0}
    assert (await store.update("vs", "v", lambda d: {**d, "usage": d["usage"] + 5}))["usage"] == 5

    def mutate(doc):
        doc["usage"] += 1

    assert (await store.update("vs", "v", mutate))["usage"] == 6
    assert await store.update("vs", "missing", {"x": 1}) is None


async def test_update_that_raises_changes_nothing(store):
    await store.put("batch", "b", {"status": "completed"})

    def cancel(doc):
        if doc["status"] == "completed":
            raise AlreadyExistsError("batch already completed")
        doc["status"] = "cancelled"

    with pytest.raises(AlreadyExistsError):
        await store.update("batch", "b", cancel)
    assert (await store.get("batch", "b"))["status"] == "completed"


async def test_concurrent_updates_from_many_threads_lose_nothing(store, store_url):
    await store.put("counter", "c", {"n": 0, "seen": []})
    # A second engine on the same file, as another worker process would have.
    other = SqlMetadataStore.open(store_url)
    threads, per_thread = 8, 25

    def bump(doc):
        doc["n"] += 1

    def worker(s):
        async def run():
            for _ in range(per_thread):
                await s.update("counter", "c", bump)
        anyio.run(run)

    pool = [threading.Thread(target=worker, args=(store if i % 2 else other,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    other.close()
    assert (await store.get("counter", "c"))["n"] == threads * per_thread


async def test_concurrent_updates_from_the_event_loop_lose_nothing(store):
    await store.put("counter", "c", {"n": 0})

    async def bump():
        await store.update("counter", "c", lambda d: {"n": d["n"] + 1})

    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(bump)
    assert (await store.get("counter", "c"))["n"] == 60


async def test_put_many_keeps_order_and_replace_keeps_created_at(store):
    await store.put_many("message", [(f"m{i}", {"i": i}) for i in range(5)], parent="chat", created_at=7)
    page = await store.list("message", parent="chat", order="asc", limit=None)
    assert [d["i"] for d in page.items] == [0, 1, 2, 3, 4]
    await store.put("message", "m0", {"i": 0, "edited": True}, parent="chat")
    page = await store.list("message", parent="chat", order="asc", limit=None)
    assert page.items[0] == {"i": 0, "edited": True}


async def test_put_json_stores_text_as_documents_and_replaces_by_id(store):
    """The telemetry flusher's write: documents already JSON text, stamped with their created_at."""
    await store.put_json("span", [("b", 20, '{"n": 1, "path": "/v1/\\u00e9\\""}'), ("a", 10, '{"n": 2}')])
    assert [d["n"] for d in (await store.list("span", order="asc", limit=None)).items] == [2, 1]
    assert (await store.get("span", "b")) == {"n": 1, "path": '/v1/\u00e9"'}
    await store.put_json("span", [("a", 30, '{"n": 3}')])  # same id: replaced, and newer now
    assert [d["n"] for d in (await store.list("span", order="asc", limit=None)).items] == [1, 3]


async def test_delete_oldest_keeps_the_newest_by_time_then_insertion(store):
    await store.put_many("span", [(f"s{i}", {"i": i}) for i in range(6)], created_at=20)  # same second
    await store.put_many("span", [(f"t{i}", {"i": i}) for i in range(3)], created_at=10)  # older, added later
    await store.put("span", "other", {"i": 0}, parent="p")  # not top-level: never counted
    assert await store.delete_oldest("span", 4) == 5
    assert [d["i"] for d in (await store.list("span", order="asc", limit=None)).items] == [2, 3, 4, 5]
    assert await store.delete_oldest("span", 4) == 0
    assert await store.count("span", parent="p") == 1


async def test_documents_survive_reopen(tmp_path):
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    first = SqlMetadataStore.open(url)
    await first.put("model", "m", {"id": "m"})
    first.close()
    second = SqlMetadataStore.open(url)
    assert await second.get("model", "m") == {"id": "m"}
    second.close()


def test_in_memory_sqlite_is_refused():
    with pytest.raises(ValueError):
        SqlMetadataStore.open("sqlite://")


async def test_offset_pages_by_position_in_sql(store):
    ids = await fill(store, 10)
    page = await store.list("file", order="asc", offset=4, limit=3)
    assert [doc["id"] for doc in page.items] == ids[4:7] and page.has_more
    last = await store.list("file", order="asc", offset=8, limit=3)
    assert [doc["id"] for doc in last.items] == ids[8:] and not last.has_more


async def test_each_key_sees_only_its_own_top_level_documents(store):
    from ggstack.core.access import Principal, current_principal

    def as_key(name: str | None, admin: bool = False):
        return current_principal.set(Principal(name, admin) if name else None)

    token = as_key("alice")
    await store.put("file", "f-a", {"id": "f-a"})
    await store.put("vector_store_file", "f-a", {"status": "done"}, parent="vs-a")
    await store.put("model", "shared", {"id": "shared"})
    current_principal.reset(token)
    token = as_key("bob")
    try:
        assert await store.get("file", "f-a") is None
        assert (await store.list("file")).items == []
        assert await store.count("file") == 0
        assert await store.update("file", "f-a", {"x": 1}) is None
        assert await store.delete("file", "f-a") is False
        with pytest.raises(AlreadyExistsError):
            await store.put("file", "f-a", {"id": "f-a", "hijack": True})
        with pytest.raises(UnknownIdError):
            await store.list("file", after="f-a")
        assert await store.get("model", "shared") == {"id": "shared"}
        await store.put("file", "f-b", {"id": "f-b"})
    finally:
        current_principal.reset(token)
    token = as_key("root", admin=True)
    try:
        assert {doc["id"] for doc in (await store.list("file")).items} == {"f-a", "f-b"}
    finally:
        current_principal.reset(token)
    token = as_key("alice")
    try:
        assert await store.get("file", "f-a") == {"id": "f-a"}
        assert await store.get("vector_store_file", "f-a", parent="vs-a") == {"status": "done"}
        assert [doc["id"] for doc in (await store.list("file")).items] == ["f-a"]
    finally:
        current_principal.reset(token)
    # No caller (start-up, workers): everything.
    assert await store.count("file") == 2


def test_an_old_database_gets_the_owner_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE ggstack_documents (seq INTEGER PRIMARY KEY, kind VARCHAR(64) NOT NULL, "
                   "parent VARCHAR(255) NOT NULL, id VARCHAR(255) NOT NULL, created_at BIGINT NOT NULL, "
                   "data JSON NOT NULL, CONSTRAINT uq_ggstack_documents_key UNIQUE (kind, parent, id))")
        db.execute("INSERT INTO ggstack_documents VALUES (1, 'file', '', 'f', 5, '{\"id\": \"f\"}')")
    store = SqlMetadataStore.open(f"sqlite:///{path}")
    try:
        assert anyio.run(store.get, "file", "f") == {"id": "f"}
    finally:
        store.close()


# -- find and scan: filters, ordering and paging done by the database --------------------------------


SPANS = [
    {"span_id": "a1", "trace_id": "A", "name": "root", "attributes": {"code": 200, "route": "/x", 'odd "key".': 1}},
    {"span_id": "a2", "trace_id": "A", "name": "child", "attributes": {"code": 500, "name": "shadow"}},
    {"span_id": "b1", "trace_id": "B", "name": "root", "attributes": {"code": "200", "flag": True}},
    {"span_id": "c1", "trace_id": "C", "name": "other", "attributes": {"code": 404, "nothing": None,
                                                                         "tags": {"k": [1, 2]}}},
    {"span_id": "d1", "trace_id": "D", "name": "root", "attributes": {"code": 201.5}},
]


def where(*conditions: tuple[str, str, object]) -> list[Condition]:
    return [Condition(key, op, value) for key, op, value in conditions]


async def found(store, *conditions, **options) -> list[str]:
    docs = await store.find("span", conditions=where(*conditions), under="attributes", **options)
    return [doc["span_id"] for doc in docs]


@pytest.fixture
async def spans(store):
    for i, span in enumerate(SPANS):
        await store.put("span", span["span_id"], span, created_at=2000 + i)
    return store


async def test_conditions_compare_like_python_and_never_across_json_types(spans):
    assert await found(spans, ("code", "eq", 200)) == ["a1"]  # "200" is a string: not equal
    assert await found(spans, ("code", "ne", 200)) == ["a2", "b1", "c1", "d1"]
    assert await found(spans, ("code", "gt", 200)) == ["a2", "c1", "d1"]
    assert await found(spans, ("code", "lt", "3")) == ["b1"]
    assert await found(spans, ("flag", "eq", True)) == ["b1"]
    assert await found(spans, ("tags", "eq", {"k": [1, 2]})) == ["c1"]
    assert await found(spans, ("nothing", "eq", None)) == ["a1", "a2", "b1", "c1", "d1"]
    assert await found(spans, ("route", "ne", None)) == ["a1"]
    assert await found(spans, ('odd "key".', "eq", 1)) == ["a1"]  # keys are parameters, not JSON paths


async def test_an_attribute_shadows_the_span_field_of_its_name(spans):
    assert await found(spans, ("name", "eq", "root")) == ["a1", "b1", "d1"]
    assert await found(spans, ("name", "eq", "shadow")) == ["a2"]
    assert await found(spans, ("name", "eq", "root"), ("code", "gt", 200)) == ["d1"]


async def test_first_per_order_and_pages_happen_in_sql(spans):
    await spans.put("span", "a0", {"span_id": "a0", "trace_id": "A", "name": "late", "attributes": {}},
                    created_at=1000)
    assert await found(spans, first_per="trace_id") == ["a0", "b1", "c1", "d1"]
    # the first of each trace is chosen before conditions: trace A's first span is not a root
    assert await found(spans, ("name", "eq", "root"), first_per="trace_id") == ["b1", "d1"]
    assert await found(spans, order_by=["-name", "code"]) == ["a2", "a1", "b1", "d1", "c1", "a0"]
    assert await found(spans, order_by=["name"], offset=1, limit=2) == ["c1", "a1"]


async def test_scan_reads_keyset_batches_within_created_bounds(spans):
    batches = [[doc["span_id"] for doc in batch] async for batch in spans.scan("span", batch=2)]
    assert batches == [["a1", "a2"], ["b1", "c1"], ["d1"]]
    bounded = [doc["span_id"] async for batch in spans.scan("span", created=(2001, 2003), batch=2)
               for doc in batch]
    assert bounded == ["a2", "b1", "c1"]
    matching = [doc["span_id"] async for batch in spans.scan("span", conditions=where(("code", "gt", 250)),
                                                               under="attributes", batch=1) for doc in batch]
    assert matching == ["a2", "c1"]
