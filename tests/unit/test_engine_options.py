"""Engine pieces that need no loaded model: option validation, stop-string holding, GGUF metadata."""

from __future__ import annotations

import struct

import pytest

from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import SamplingOptions, TokenEvent
from ggstack.engines.gguf_info import GGUFFormatError, inspect_gguf, read_gguf_metadata
from ggstack.engines.llamacpp import LlamaCppOptions, check_embedding_batch
from ggstack.engines.streaming import StopBuffer
from tests.fixtures.gguf_builder import build_tiny_bert_gguf, build_tiny_chat_gguf


@pytest.mark.parametrize("n_batch", [1, 8, 200, 256, 512, 768, 1024, 2048])
def test_embedding_batch_at_most_256_or_multiple_of_256_is_accepted(n_batch):
    check_embedding_batch(n_batch)


@pytest.mark.parametrize("n_batch", [0, 257, 300, 384, 500, 1000])
def test_embedding_batch_that_would_abort_llama_cpp_is_refused(n_batch):
    with pytest.raises(InvalidValueError) as err:
        check_embedding_batch(n_batch)
    assert str(n_batch) in err.value.message


def test_embedding_options_use_one_batch_for_the_whole_context():
    opts = LlamaCppOptions.from_spec({"pooling": "mean"}, context_length=512, embedding=True, trained_context=512)
    assert (opts.n_ctx, opts.n_batch, opts.flash_attn, opts.pooling_type) == (512, 512, True, 1)


def test_embedding_context_is_capped_at_the_trained_positions():
    opts = LlamaCppOptions.from_spec({}, context_length=1024, embedding=True, trained_context=512)
    assert opts.n_ctx == 512


def test_embedding_context_of_300_is_refused_before_loading():
    with pytest.raises(InvalidValueError):
        LlamaCppOptions.from_spec({}, context_length=300, embedding=True, trained_context=512)


def test_chat_options_default_context_is_capped_by_the_trained_one():
    assert LlamaCppOptions.from_spec({}, context_length=None, embedding=False, trained_context=2048).n_ctx == 2048
    assert LlamaCppOptions.from_spec({}, context_length=8192, embedding=False, trained_context=2048).n_ctx == 8192


def test_unknown_engine_option_is_an_error_naming_it():
    with pytest.raises(InvalidValueError) as err:
        LlamaCppOptions.from_spec({"n_gpu": 3}, context_length=None, embedding=False, trained_context=None)
    assert "n_gpu" in err.value.message


@pytest.mark.parametrize("pooling", ["none", "rank"])
def test_embedding_model_cannot_use_pooling_none_or_rank(pooling):
    """rank gives the classifier's outputs, not a vector of the model's width: rerank models only."""
    with pytest.raises(InvalidValueError):
        LlamaCppOptions.from_spec({"pooling": pooling}, context_length=256, embedding=True, trained_context=512)


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", 0), ("temperature", -0.1), ("top_p", 1.5), ("top_k", -1), ("min_p", 2.0),
    ("repeat_penalty", 0.0), ("presence_penalty", 3.0), ("frequency_penalty", -2.5), ("seed", -1),
    ("stop", [""]), ("logprobs", 21), ("logprobs", -1),
])
def test_sampling_option_out_of_range_names_the_field(field, value):
    with pytest.raises(InvalidValueError) as err:
        SamplingOptions(**{field: value})
    assert err.value.field == field


def test_grammar_and_json_schema_together_are_refused():
    with pytest.raises(InvalidValueError):
        SamplingOptions(grammar='root ::= "a"', json_schema={"type": "string"})


def _run(stops: list[str], pieces: list[str]) -> tuple[str, bool, list[TokenEvent]]:
    buf = StopBuffer(stops)
    events: list[TokenEvent] = []
    for i, piece in enumerate(pieces):
        released, stopped = buf.push(TokenEvent(piece, i))
        events += released
        if stopped:
            return "".join(e.text for e in events), True, events
    events += buf.flush()
    return "".join(e.text for e in events), False, events


def test_stop_string_spanning_tokens_is_cut_and_never_emitted():
    text, stopped, events = _run(["STOP"], ["Hel", "lo S", "T", "OP and more"])
    assert (text, stopped) == ("Hello ", True)
    assert [e.token_id for e in events] == [0, 1]


def test_text_resembling_a_stop_prefix_is_released_when_it_diverges():
    text, stopped, _ = _run(["STOP"], ["a S", "T", "x", "y"])
    assert (text, stopped) == ("a STxy", False)


def test_held_prefix_is_flushed_at_the_end_of_generation():
    text, stopped, _ = _run(["</s>"], ["abc", "</"])
    assert (text, stopped) == ("abc</", False)


def test_earliest_of_several_stop_strings_wins():
    text, stopped, _ = _run(["world", "lo"], ["hello world"])
    assert (text, stopped) == ("hel", True)


def test_without_stop_strings_every_event_is_released_at_once():
    buf = StopBuffer([])
    released, stopped = buf.push(TokenEvent("x", 1))
    assert [e.text for e in released] == ["x"] and not stopped


def test_gguf_metadata_of_tiny_models(tmp_path):
    chat = inspect_gguf(build_tiny_chat_gguf(tmp_path / "c.gguf", context_length=384))
    assert (chat.architecture, chat.context_length, chat.embedding_length, chat.has_chat_template) == (
        "llama", 384, 64, True)
    bert = inspect_gguf(build_tiny_bert_gguf(tmp_path / "b.gguf"))
    assert (bert.architecture, bert.embedding_length, bert.pooling_type, bert.has_chat_template) == (
        "bert", 32, 1, False)


def test_non_gguf_and_truncated_files_are_format_errors(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"ggml" + b"\0" * 100)
    with pytest.raises(GGUFFormatError):
        read_gguf_metadata(tmp_path / "x.bin")
    good = build_tiny_bert_gguf(tmp_path / "b.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(good[:200])
    with pytest.raises(GGUFFormatError):
        read_gguf_metadata(tmp_path / "cut.gguf")
    (tmp_path / "huge.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 10**9))
    with pytest.raises(GGUFFormatError):
        read_gguf_metadata(tmp_path / "huge.gguf")
