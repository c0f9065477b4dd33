"""Files API on a real server, through the openai SDK and httpx."""

from __future__ import annotations

import anyio
import httpx
import openai
import pytest

from ggstack.ingest.records import FILE
from ggstack.stores.sql import SqlMetadataStore
from tests.server import Server, served

LIMIT = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("files"), config={"max_upload_bytes": LIMIT})


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1/openai/v1", api_key="x", max_retries=0)


def detail(error: openai.APIStatusError) -> str:
    """Llama Stack errors are {status, title, detail}; the SDK's message shows only the code."""
    return error.response.json()["detail"]


def blobs(server: Server) -> list:
    return [p for p in (server.data_dir / "files").rglob("*") if p.is_file() and p.parent.name != "tmp"]


def test_upload_retrieve_content_delete(client, server):
    data = "héllo, wörld\n".encode() * 10
    uploaded = client.files.create(file=("notes.txt", data, "text/plain"), purpose="assistants")
    assert uploaded.id.startswith("file-")
    assert (uploaded.bytes, uploaded.filename, uploaded.purpose) == (len(data), "notes.txt", "assistants")
    # No expires_after: one year, as Llama Stack's local provider does.
    assert uploaded.expires_at - uploaded.created_at == 365 * 24 * 3600

    assert client.files.retrieve(uploaded.id).model_dump() == uploaded.model_dump()
    content = client.files.content(uploaded.id)
    assert content.content == data
    assert content.response.headers["content-type"] == "application/octet-stream"
    assert 'filename="notes.txt"' in content.response.headers["content-disposition"]

    # The bytes live under a generated name, not the client's.
    assert not any("notes" in p.name for p in blobs(server))
    assert any(p.read_bytes() == data for p in blobs(server))

    deleted = client.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted) == (uploaded.id, True)
    assert not any(p.read_bytes() == data for p in blobs(server))
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as info:
            call(uploaded.id)
        assert "not found" in detail(info.value)


def test_expires_after_sets_expires_at_and_is_validated(client):
    kept = client.files.create(file=("a.md", b"# a"), purpose="batch",
                               expires_after={"anchor": "created_at", "seconds": 7200})
    assert kept.expires_at - kept.created_at == 7200
    assert kept.purpose == "batch"
    for seconds in (10, 31 * 24 * 3600):
        with pytest.raises(openai.BadRequestError) as info:
            client.files.create(file=("a.md", b"# a"), purpose="batch",
                                expires_after={"anchor": "created_at", "seconds": seconds})
        assert "expires_after.seconds" in detail(info.value)
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("a.md", b"# a"), purpose="batch",
                            expires_after={"anchor": "last_active_at", "seconds": 7200})


def test_a_null_expires_after_form_field_is_refused(server):
    """`expires_after` is an object in the spec, never null; a form part reading `null` was taken
    as left out, so a schema-violating upload was accepted (found by `ggstack contract`)."""
    answer = httpx.post(f"{server.url}/v1/files", files={"file": ("a.md", b"# a")},
                        data={"purpose": "batch", "expires_after": "null"})
    assert answer.status_code == 400 and "expires_after" in answer.json()["detail"]


def test_list_pages_orders_and_filters_by_purpose(client):
    ids = [client.files.create(file=(f"p{i}.txt", b"x"), purpose="batch").id for i in range(5)]
    listed = [f.id for f in client.files.list(purpose="batch", order="asc")]
    assert [i for i in listed if i in ids] == ids
    assert all(client.files.retrieve(i).purpose == "batch" for i in listed)
    assert not set(ids) & {f.id for f in client.files.list(purpose="assistants")}

    first = client.files.list(purpose="batch", order="desc", limit=2)
    assert first.has_more and len(first.data) == 2
    assert (first.first_id, first.last_id) == (first.data[0].id, first.data[1].id)
    # The SDK's auto-pagination follows `after` = last_id until has_more is false.
    walked = [f.id for f in client.files.list(purpose="batch", order="desc", limit=2)]
    assert walked == list(reversed(listed))


def test_empty_page_still_has_ids(client, server):
    newest = client.files.create(file=("last.txt", b"x"), purpose="assistants")
    assert httpx.get(f"{server.url}/v1/files", params={"after": "file-nope"}).status_code == 400
    # Nothing comes after the newest file in ascending order; the spec still requires both ids.
    body = httpx.get(f"{server.url}/v1/openai/v1/files", params={"after": newest.id, "order": "asc"}).json()
    assert body == {"object": "list", "data": [], "has_more": False, "first_id": "", "last_id": ""}


def test_upload_over_limit_is_413_and_leaves_nothing(client, server):
    before = len(blobs(server))
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("big.bin", b"x" * (LIMIT + 1)), purpose="assistants")
    assert info.value.status_code == 413
    assert "max_upload_bytes" in detail(info.value)
    assert len(blobs(server)) == before
    assert not list((server.data_dir / "files" / "tmp").iterdir())


def test_bad_requests_are_400(client, server):
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("a.txt", b"x"), purpose="fine-tune")
    assert "purpose" in detail(info.value)
    url = f"{server.url}/v1/openai/v1/files"
    missing = httpx.post(url, data={"purpose": "assistants"}, files={"other": ("a.txt", b"x")})
    assert missing.status_code == 400 and "file" in missing.json()["detail"]
    as_text = httpx.post(url, files={"purpose": (None, "assistants"), "file": (None, "not a file part")})
    assert as_text.status_code == 400 and "file" in as_text.json()["detail"]
    assert httpx.get(url, params={"limit": 0}).status_code == 400


def test_expired_files_disappear(client, server):
    doomed = client.files.create(file=("old.txt", b"old bytes"), purpose="assistants")
    kept = client.files.create(file=("new.txt", b"new bytes"), purpose="assistants")
    assert len(blobs(server)) >= 2

    async def expire() -> None:
        # Another process writing the same SQLite database, as a clock jump would look.
        store = SqlMetadataStore.open(f"sqlite:///{server.data_dir / 'ggstack.db'}")
        try:
            await store.update(FILE, doomed.id, {"expires_at": doomed.created_at - 1})
        finally:
            store.close()

    anyio.run(expire)
    listed = {f.id for f in client.files.list()}
    assert kept.id in listed and doomed.id not in listed
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(doomed.id)
    assert not any(p.read_bytes() == b"old bytes" for p in blobs(server))
    assert client.files.content(kept.id).content == b"new bytes"
