"""Domain errors become HTTP errors in one place: statuses, the reference's words, request field names."""

from __future__ import annotations

import pytest

from ggstack.core import errors as domain
from ggstack.http.errors import InvalidRequest, NotFound, from_domain, naming, naming_stream


@pytest.mark.parametrize("error, status", [
    (domain.NotFoundError("Model 'x' not found"), 404),
    (domain.UnknownIdError("Vector store 'vs_1' not found"), 400),
    (domain.InvalidValueError("limit must be at least 1", field="limit"), 400),
    (domain.ContextOverflowError("the prompt has 9 tokens"), 400),
    (domain.GrammarError("the grammar does not parse"), 400),
    (domain.AlreadyExistsError("Model 'x' already exists"), 409),
    (domain.TooLargeError("over 4096 bytes"), 413),
    (domain.BusyError("3 requests waiting", retry_after=2), 429),
    (domain.UnsupportedError("no grammar with this engine"), 501),
    (domain.UnavailableError("Chroma does not answer"), 503),
])
def test_each_domain_error_has_its_status(error, status):
    mapped = from_domain(error)
    assert mapped.status == status and error.message in mapped.message


def test_unknown_ids_say_invalid_value_and_overflow_has_its_code():
    assert from_domain(domain.UnknownIdError("Response 'r' not found")).message == \
        "Invalid value: Response 'r' not found"
    assert from_domain(domain.ContextOverflowError("too long")).code == "context_length_exceeded"
    assert from_domain(domain.BusyError("busy", retry_after=3)).headers["Retry-After"] == "3"


def test_fields_by_type_or_by_domain_name_else_the_domain_name():
    overflow = domain.ContextOverflowError("too long")
    assert from_domain(overflow).param == "prompt"
    assert from_domain(overflow, {domain.ContextOverflowError: "messages"}).param == "messages"
    assert from_domain(overflow, {domain.InvalidValueError: "input"}).param == "input"  # by its base class
    bad_path = domain.InvalidValueError("no such file", field="path")
    assert from_domain(bad_path, {"path": "provider_model_id"}).param == "provider_model_id"
    assert from_domain(domain.NotFoundError("gone")).param is None


def test_naming_maps_inside_a_block():
    with pytest.raises(NotFound) as info, naming({domain.NotFoundError: "model_id"}):
        raise domain.NotFoundError("Model 'x' not found")
    assert info.value.param == "model_id"


@pytest.mark.anyio
async def test_naming_stream_maps_errors_raised_while_iterating():
    async def events():
        yield 1
        raise domain.ContextOverflowError("too long")

    seen = []
    with pytest.raises(InvalidRequest) as info:
        async for event in naming_stream(events(), {domain.ContextOverflowError: "content"}):
            seen.append(event)
    assert seen == [1] and info.value.param == "content"
