"""Read a GGUF file's scalar metadata without loading the model.

`gguf.GGUFReader` decodes every array element (the whole vocabulary) into Python objects,
which takes seconds for a 49k-token vocabulary; registration only needs a handful of
scalars, so this reader skips arrays by their byte size and stops after the key/value section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ggstack.core.errors import InvalidValueError

GGUF_MAGIC = b"GGUF"

# GGUF value types -> struct format of one element (strings and arrays are handled apart).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# No real model has anywhere near this many keys or this long a string; past it the file is corrupt.
_MAX_KV = 100_000
_MAX_STRING = 64 * 1024 * 1024


class GGUFFormatError(InvalidValueError):
    """The file is not a GGUF file, or its metadata section is truncated or corrupt."""


@dataclass(frozen=True)
class GGUFInfo:
    """What the registry wants to know about a model file before loading it."""

    architecture: str
    context_length: int | None
    embedding_length: int | None
    pooling_type: int | None
    has_chat_template: bool
    metadata: dict[str, Any]


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFFormatError("unexpected end of file in GGUF metadata")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    if n > _MAX_STRING:
        raise GGUFFormatError(f"GGUF string of {n} bytes")
    return _read(f, n).decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        etype, count = struct.unpack("<IQ", _read(f, 12))
        if etype in _SCALARS:
            f.seek(count * struct.calcsize(_SCALARS[etype]), 1)
        elif etype == _STRING:
            for _ in range(count):
                (n,) = struct.unpack("<Q", _read(f, 8))
                f.seek(n, 1)
        else:
            for _ in range(count):
                _value(f, etype)
        return None  # arrays are skipped, never returned
    raise GGUFFormatError(f"unknown GGUF value type {vtype}")


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (array-valued keys are left out)."""
    try:
        with Path(path).open("rb") as f:
            if _read(f, 4) != GGUF_MAGIC:
                raise GGUFFormatError(f"{path} is not a GGUF file")
            (version,) = struct.unpack("<I", _read(f, 4))
            if version < 2:
                raise GGUFFormatError(f"{path}: GGUF version {version} is too old")
            _n_tensors, n_kv = struct.unpack("<QQ", _read(f, 16))
            if n_kv > _MAX_KV:
                raise GGUFFormatError(f"{path}: {n_kv} metadata keys")
            out: dict[str, Any] = {}
            for _ in range(n_kv):
                key = _string(f)
                (vtype,) = struct.unpack("<I", _read(f, 4))
                value = _value(f, vtype)
                if value is not None:
                    out[key] = value
            return out
    except OSError as exc:
        raise GGUFFormatError(f"cannot read {path}: {exc.strerror}") from None


def inspect_gguf(path: Path) -> GGUFInfo:
    """Architecture, trained context length, embedding width and chat-template presence."""
    meta = read_gguf_metadata(path)
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFFormatError(f"{path}: no general.architecture key")

    def as_int(key: str) -> int | None:
        value = meta.get(key)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    return GGUFInfo(
        architecture=arch,
        context_length=as_int(f"{arch}.context_length"),
        embedding_length=as_int(f"{arch}.embedding_length"),
        pooling_type=as_int(f"{arch}.pooling_type"),
        has_chat_template=isinstance(meta.get("tokenizer.chat_template"), str),
        metadata=meta,
    )
