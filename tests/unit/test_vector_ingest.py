"""The pure parts of vector-store ingestion: word windows, size limits, record validation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from generated.models.llama_stack_deprecated import ExpiresAfter
from ggstack.core.errors import InvalidValueError
from ggstack.http.errors import from_domain
from ggstack.ingest import records
from ggstack.ingest.chunking import MAX_UNIT_CHARS, chunk_units, text_units
from ggstack.ingest.pipeline import SPECIAL_TOKENS, window_sizes


def windows(text: str, size: int, overlap: int, count=len):
    spans = text_units(text)
    return chunk_units(text, spans, [count(text[a:b]) for a, b in spans],
                       max_chunk_size_tokens=size, chunk_overlap_tokens=overlap)


def test_units_are_words_and_long_words_are_cut():
    text = "  Hello,\tworld!\n" + "x" * (2 * MAX_UNIT_CHARS + 3)
    spans = text_units(text)
    assert [text[a:b] for a, b in spans[:2]] == ["Hello,", "world!"]
    assert [b - a for a, b in spans[2:]] == [MAX_UNIT_CHARS, MAX_UNIT_CHARS, 3]
    assert text_units(" \n\t ") == []


def test_windows_are_slices_of_the_original_text_within_the_limit():
    words = [f"Word{i}," for i in range(50)]
    text = "  ".join(words) + "\n"
    chunks = windows(text, size=10, overlap=4, count=lambda w: 1)
    for chunk in chunks:
        assert chunk.text in text and chunk.text == chunk.text.strip()
        assert chunk.n_tokens <= 10
    # Consecutive windows start 10 - 4 = 6 words apart, and together cover every word.
    assert [c.start_token for c in chunks] == list(range(0, 45, 6))
    assert chunks[0].text.startswith("Word0,") and chunks[-1].text.endswith("Word49,")
    covered = {w for c in chunks for w in c.text.split()}
    assert covered == set(words)


def test_token_counts_decide_the_window_not_word_counts():
    text = "aaaa b cc dddd e"
    chunks = windows(text, size=5, overlap=0)  # tokens = characters here
    assert [c.text for c in chunks] == ["aaaa b", "cc", "dddd e"]
    assert [c.n_tokens for c in chunks] == [5, 2, 5]


def test_overlap_never_stalls_and_a_big_unit_stands_alone():
    text = "x" * MAX_UNIT_CHARS + " y"
    chunks = windows(text, size=3, overlap=2)
    assert [c.text for c in chunks] == ["x" * MAX_UNIT_CHARS, "y"]
    # Overlap as large as allowed still moves forward every time.
    chunks = windows("a b c d e f g", size=2, overlap=1, count=lambda w: 1)
    assert [c.text for c in chunks] == ["a b", "b c", "c d", "d e", "e f", "f g"]
    with pytest.raises(ValueError):
        windows("a b", size=2, overlap=2)


def test_window_shrinks_to_what_the_model_reads():
    engine = SimpleNamespace(context_length=512)
    assert window_sizes(engine, 800, 400) == (512 - SPECIAL_TOKENS, (512 - SPECIAL_TOKENS) // 2)
    assert window_sizes(engine, 300, 100) == (300, 100)
    assert window_sizes(SimpleNamespace(context_length=8192), 4096, 2048) == (4096, 2048)


def test_attributes_must_be_scalars_and_numbers_stay_as_sent():
    assert records.validate_attributes({"a": "x", "n": 3, "f": 2.5, "b": True, "gone": None}) == {
        "a": "x", "n": 3, "f": 2.5, "b": True}
    assert isinstance(records.validate_attributes({"n": 3})["n"], int)
    for bad in ({"nested": {"x": 1}}, {"list": [1]}, {"_ggs_file_id": "x"},
                {f"k{i}": i for i in range(17)}, {"k" * 65: 1}, {"long": "v" * 513}):
        with pytest.raises(InvalidValueError):
            records.validate_attributes(bad)
    assert records.validate_metadata(None) == {}


def test_file_expiry_range():
    assert records.file_expiry(None, 1000) == 1000 + records.DEFAULT_FILE_TTL_SECONDS
    assert records.file_expiry(ExpiresAfter(anchor="created_at", seconds=3600), 1000) == 4600
    for seconds in (3599, 30 * 24 * 3600 + 1):
        with pytest.raises(InvalidValueError) as err:
            # model_construct: the route's own validation would stop these before a handler.
            records.file_expiry(ExpiresAfter.model_construct(anchor="created_at", seconds=seconds), 1000)
        assert err.value.field == "expires_after.seconds"
    assert records.file_expired({"expires_at": 100}, at=100)
    assert not records.file_expired({"expires_at": 101}, at=100)


def test_vector_store_expiry_follows_activity():
    policy = records.validate_store_expiry({"anchor": "last_active_at", "days": 2})
    assert policy == {"anchor": "last_active_at", "days": 2}
    doc = {"created_at": 0, "last_active_at": 1000, "expires_after": policy}
    assert records.store_expires_at(doc) == 1000 + 2 * 86400
    assert not records.store_expired(doc, at=1000 + 2 * 86400 - 1)
    assert records.store_expired(doc, at=1000 + 2 * 86400)
    assert records.store_expires_at({"created_at": 5}) is None
    for bad in ({"anchor": "created_at", "days": 1}, {"anchor": "last_active_at", "days": 0},
                {"anchor": "last_active_at", "days": 366}, {"anchor": "last_active_at", "days": 1.5},
                {"anchor": "last_active_at", "days": 1, "extra": 1}, "soon"):
        with pytest.raises(InvalidValueError):
            records.validate_store_expiry(bad)


def test_unknown_store_error_is_the_llama_stack_text():
    error = from_domain(records.store_not_found("vs_x"))
    assert (error.status, error.message) == (400, "Invalid value: Vector store 'vs_x' not found")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_touching_a_store_moves_last_active_at_from_the_doc_a_request_read(tmp_path, anyio_backend):
    from ggstack.core.ids import now
    from ggstack.stores.sql import SqlMetadataStore

    metadata = SqlMetadataStore.open(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        await metadata.put(records.VECTOR_STORE, "vs", {"id": "vs", "created_at": 1, "last_active_at": 1})
        read = await metadata.get(records.VECTOR_STORE, "vs")
        await records.touch_store(metadata, "vs", read)
        moved = (await metadata.get(records.VECTOR_STORE, "vs"))["last_active_at"]
        assert moved >= now() - 5
        # Within the resolution of the doc the request read: no write.
        await records.touch_store(metadata, "vs", {**read, "last_active_at": moved})
        await records.touch_store(metadata, "vs")
        assert (await metadata.get(records.VECTOR_STORE, "vs"))["last_active_at"] == moved
    finally:
        metadata.close()
