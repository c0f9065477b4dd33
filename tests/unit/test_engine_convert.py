"""The safetensors reader and the pieces of the MiniLM converter that need no model."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ggstack.engines.convert import (
    ConversionError,
    phantom_space_vocab,
    read_safetensors,
    read_safetensors_header,
)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], *, metadata: dict[str, str] | None = None,
                      header_override: dict | None = None) -> Path:
    """A minimal safetensors writer, so the reader is checked against the format, not itself."""
    names = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64"}
    header: dict = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if header_override:
        header.update(header_override)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def test_tensors_round_trip_with_shapes_and_dtypes(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.array([1.5, -2.0], dtype=np.float16)
    c = np.arange(5, dtype=np.int64)
    path = write_safetensors(tmp_path / "m.safetensors", {"a": a, "b": b, "c": c}, metadata={"format": "pt"})
    start, infos, meta = read_safetensors_header(path)
    assert meta == {"format": "pt"}
    assert [(t.name, t.dtype, t.shape) for t in infos] == [("a", "F32", (3, 4)), ("b", "F16", (2,)), ("c", "I64", (5,))]
    assert start % 8 == 0
    out = read_safetensors(path)
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    np.testing.assert_array_equal(out["c"], c)


def test_bf16_is_widened_to_float32(tmp_path):
    values = np.array([1.0, -0.5, 3.140625], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    text = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "bf.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + bf16.tobytes())
    out = read_safetensors(path)["x"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("override", [
    {"a": {"dtype": "F32", "shape": [3, 5], "data_offsets": [0, 48]}},   # shape says 60 bytes
    {"a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 4800]}},  # past the end of the file
    {"a": {"dtype": "Q4", "shape": [3, 4], "data_offsets": [0, 48]}},     # unknown dtype
    {"a": {"dtype": "F32", "shape": [3, 4]}},                              # no offsets
])
def test_inconsistent_header_entries_are_refused(tmp_path, override):
    path = write_safetensors(tmp_path / "bad.safetensors", {"a": np.zeros((3, 4), np.float32)},
                             header_override=override)
    with pytest.raises(ConversionError):
        read_safetensors_header(path)


def test_header_length_beyond_the_file_is_refused(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(ConversionError, match="header length"):
        read_safetensors_header(path)


def test_non_json_header_is_refused(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{]")
    with pytest.raises(ConversionError, match="not JSON"):
        read_safetensors_header(path)


def test_wordpiece_becomes_phantom_space_vocab():
    assert phantom_space_vocab(["[CLS]", "hello", "##ing", "#", "[unused3]"]) == [
        "[CLS]", "\u2581hello", "ing", "\u2581#", "[unused3]"]
